#include "nn/linear.h"

#include <cmath>

#include "autograd/ops.h"
#include "engine/error.h"
#include "nn/init.h"
#include "nn/weight_dtype.h"

namespace mp::nn {

Linear::Linear(const Tensor& w) : in_(w.dim() == 2 ? w.size(1) : 0), out_(w.dim() == 2 ? w.size(0) : 0) {
  if (w.dim() != 2) fail("Linear: a weight of shape {} is not a matrix (out, in)", shape_str(w.shape()));
  weight = add_parameter("weight", w, false);  // (out, in)
}

Linear::Linear(int64_t in_features, int64_t out_features, bool has_bias, Layout layout, uint64_t seed)
    : in_(in_features), out_(out_features), layout_(layout) {
  if (in_features <= 0 || out_features <= 0) fail("Linear({}, {}): sizes must be positive", in_features, out_features);
  TagScope scope(Tag::weights);
  if (layout == Layout::torch) {
    Tensor w = Tensor::empty({out_, in_}, weight_dtype());  // (out, in)
    init::kaiming_uniform_(w, std::sqrt(5.0), seed);
    weight = add_parameter("weight", w);
  } else {
    Tensor w = Tensor::empty({in_, out_}, weight_dtype());  // (in, out)
    init::normal_(w, 0.0, 0.02, seed);
    weight = add_parameter("weight", w);
  }
  if (has_bias) {
    Tensor b = Tensor::empty({out_});  // (out)
    if (layout == Layout::torch) {
      double bound = 1.0 / std::sqrt(double(in_));
      init::uniform_(b, -bound, bound, mix_seed(seed, 1, 0));
    } else {
      init::zeros_(b);
    }
    bias = add_parameter("bias", b);
  }
}

Variable Linear::base_forward(const Variable& x) const {
  if (x.dim() == 0 || x.size(-1) != in_)
    fail("Linear({}, {}): input of shape {} does not end in {}", in_, out_, shape_str(x.shape()), in_);
  if (nf4_) return ag::linear_nf4(x, nf4_, bias);                  // (..., out)
  return ag::linear(x, weight, bias, layout_ == Layout::conv1d);  // (..., out)
}

void Linear::check_frozen() const {
  if (weight.requires_grad())
    fail("Linear({}, {}): a trainable weight cannot be stored in nf4 (NF4 is for a frozen base; freeze it first)",
         in_, out_);
}

void Linear::quantize_nf4() {
  if (nf4_) return;
  check_frozen();
  TagScope scope(Tag::weights);
  const Tensor& w = weight.value();
  set_nf4_weight(std::make_shared<const Nf4Tensor>(nf4_quantize(layout_ == Layout::conv1d ? w.transpose(0, 1) : w)));
}

void Linear::set_nf4_weight(std::shared_ptr<const Nf4Tensor> w) {
  if (!w || w->shape != Shape{out_, in_})
    fail("Linear({}, {}): an nf4 weight must be ({}, {}), got {}", in_, out_, out_, in_,
         w ? shape_str(w->shape) : "none");
  if (weight.defined()) check_frozen();
  nf4_ = std::move(w);
  if (weight.defined()) {
    remove_parameter("weight");
    weight = Variable();
  }
}

void Linear::dequantize_nf4() {
  if (!nf4_) return;
  TagScope scope(Tag::weights);
  Tensor w = nf4_dequantize(*nf4_);  // (out, in)
  if (layout_ == Layout::conv1d) w = w.transpose(0, 1).contiguous();  // (in, out)
  weight = add_parameter("weight", w, false);
  nf4_.reset();
}

Variable Linear::forward(const Variable& x) {
  if (!adapter_ || !adapter_->enabled) return base_forward(x);  // (..., out)
  Variable out = base_forward(adapter_->input(x));                // (..., out)
  return adapter_->forward(x, out, *this);
}

void Linear::set_adapter(const std::string& name, std::shared_ptr<LinearAdapter> adapter) {
  clear_adapter();
  if (!adapter) return;  // set_adapter(name, nullptr) just detaches
  adapter->train(is_training());
  adapter_ = add_module(name, std::move(adapter));
  adapter_name_ = name;
}

void Linear::clear_adapter() {
  if (!adapter_) return;
  remove_module(adapter_name_);
  adapter_.reset();
  adapter_name_.clear();
}

}  // namespace mp::nn
