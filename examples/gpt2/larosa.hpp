// examples/gpt2/larosa.hpp — LaRoSA for GPT-2: calibrate rotations on corpus text run through the model, fold them.
// (Filled in when frugal/rotation's folding lands.)
#pragma once

#include <cstdint>
#include <vector>

#include "engine.hpp"

namespace gpt2 {

struct larosa_options {
  bool layerwise = false;  //!< one rotation per layer (+ residual adapters) instead of one for the residual stream
};

struct larosa_rotations {
  int dim = 0;
  std::vector<std::vector<float>> q;  // one [C, C] (model-level) or one per layer
};

template <class Tag, class T>
larosa_rotations larosa_calibrate(typename backend<Tag>::context&, const device_model<Tag, T>&,
                                  const std::vector<std::int32_t>&, larosa_options) {
  fail("larosa_calibrate", "not available yet");
}

inline weights larosa_apply(weights&&, const larosa_rotations&) { fail("larosa_apply", "not available yet"); }

}  // namespace gpt2
