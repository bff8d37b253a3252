// frugal/frugal.hpp — umbrella header: everything public in frugal.
// In a .cu file compiled by nvcc the CUDA overloads are available too; elsewhere only frugal::cpu.
#pragma once

#include "core/config.hpp"
#include "core/device.hpp"
#include "core/dtype.hpp"
#include "core/error.hpp"
#include "core/parallel.hpp"
#include "core/view.hpp"
#include "core/workspace.hpp"

#include "sparsify/topk.hpp"
#include "gemv/gemv.hpp"
#include "kv/block_allocator.hpp"
#include "kv/decode_attention.hpp"
#include "kv/paged_kv.hpp"
#include "kv/vmm_kv.hpp"
#include "rotation/covariance.hpp"
#include "rotation/eigh.hpp"
#include "rotation/larosa.hpp"

// frugal/vocab needs PCRE2 (Debian: libpcre2-dev) for GPT-2's pre-tokenisation regex; include it when present.
#if __has_include(<pcre2.h>) || defined(FRUGAL_WITH_VOCAB)
#include "vocab/bpe.hpp"
#include "vocab/patch_embeddings.hpp"
#include "vocab/patch_merge.hpp"
#include "vocab/patch_tokenizer.hpp"
#include "vocab/patch_vocab.hpp"
#endif
