// LoRA composition, as HF PEFT's LoraModel.add_weighted_adapter (PEFT 0.21):
// a new LoRA adapter made from several loaded ones, weighted.
//
//   peft::add_weighted_adapter(*pm, {"a", "b"}, {0.7, 0.3}, "ab", peft::CombinationType::svd);
//   pm->save_pretrained("out/", "ab");
//
// The new adapter's config is the first adapter's with r = lora_alpha =
// the new rank (scaling 1 without rsLoRA) and target_modules the union of
// the inputs' (regexes joined as "(a)|(b)"). Per target layer, over the
// adapters i that wrap it, with s_i = adapter i's scaling:
//
//   linear  same r required; A = sum sign(w_i s_i) sqrt(|w_i s_i|) A_i,
//           B = sum sqrt(|w_i s_i|) B_i                       (r, in), (out, r)
//   cat     r = sum of the r_i; A = rows w_i s_i A_i stacked, B = columns B_i
//           side by side (the rows/columns of absent adapters stay zero)
//   svd     delta = sum w_i s_i B_i A_i (out, in) = U S Vh; keep the first
//           r = svd_rank (default: the largest r_i): B = U[:, :r] diag(S[:r]),
//           A = Vh[:r, :]
//
// One adapter alone is always combined `linear`, as in PEFT.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "peft/peft_model.h"

namespace mp::peft {

enum class CombinationType : uint8_t { linear, cat, svd };
std::string_view combination_type_name(CombinationType t);  // "linear", "cat", "svd"
// "linear" | "cat" | "svd"; mp::Error naming the choices otherwise.
CombinationType parse_combination_type(std::string_view name);

// Add LoRA adapter `adapter_name` to `model`, combining `adapters` with
// `weights` (one each, any sign). svd_rank: the svd type's rank, 0 = the
// largest input rank. mp::Error (nothing added) for: no adapters, an unknown
// or non-LoRA adapter, a name given twice, weights of another count,
// adapter_name already taken, different r under linear, svd_rank with
// another type or above the inputs' total rank, adapters made for different
// base models, target_modules mixing lists and regexes.
void add_weighted_adapter(PeftModel& model, const std::vector<std::string>& adapters,
                          const std::vector<double>& weights, const std::string& adapter_name,
                          CombinationType combination_type, int svd_rank = 0);

}  // namespace mp::peft
