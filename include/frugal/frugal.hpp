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
