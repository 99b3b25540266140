// What ops read from their thread instead of from their arguments, in one
// struct, with one guard that sets it for a scope.
//
// Each field belongs to a layer above or at the engine, and that layer's
// header names the scope that sets it:
//
//   field         read by                               set by
//   device        tensor factories (engine)             DeviceScope
//   tag           storage ledger (engine)               TagScope
//   grad_enabled  op wrappers (autograd/variable.h)     NoGrad, EnableGrad
//   autocast      GEMM layers (autograd/autocast.h)     AutocastScope
//   weight_dtype  Linear, Embedding (nn/weight_dtype.h) WeightDTypeScope
//
// Every scope is a StateScope: it saves the whole state it finds and puts it
// back on destruction, so scopes nest and any exit restores everything.
// Activation recompute (autograd/recompute.cpp) captures the state of the
// forward as one value and replays under it.
#pragma once
#include <type_traits>

#include "engine/device.h"
#include "engine/dtype.h"
#include "engine/memory.h"

namespace mp {

namespace ag {
class CastCache;  // autograd/autocast.h
}

// Mixed precision: the dtype GEMMs compute in (f32: off, or bf16), and the
// cache of frozen weights' bf16 copies (null: cast every time).
struct Autocast {
  DType dtype = DType::f32;
  ag::CastCache* cache = nullptr;
};

struct ThreadState {
  Device device = kCPU;             // where tensor factories put new tensors when none is given
  Tag tag = Tag::activations;       // the tag new storage gets when none is given
  bool grad_enabled = true;         // whether ops record a graph
  Autocast autocast;                // see above
  DType weight_dtype = DType::f32;  // the dtype new weight matrices are made in (f32, bf16 or f64)
};

const ThreadState& thread_state();

// The one guard: the thread's state is `s` for the scope, then the state it replaced.
// A state with an autocast dtype other than f32/bf16 or an i32 weight dtype is an mp::Error.
class StateScope {
 public:
  explicit StateScope(const ThreadState& s);
  ~StateScope();
  StateScope(const StateScope&) = delete;
  StateScope& operator=(const StateScope&) = delete;

 private:
  ThreadState saved_;
};

// A StateScope that changes one field and keeps the others:
//   FieldScope<&ThreadState::tag> s(Tag::weights);
template <auto Field>
class FieldScope : public StateScope {
  template <class T>
  struct field_type;
  template <class T>
  struct field_type<T ThreadState::*> {
    using type = T;
  };

 public:
  using Value = typename field_type<decltype(Field)>::type;
  template <class First, class... Rest>  // the field's value, or what makes it (AutocastScope: dtype, cache)
  explicit FieldScope(First first, Rest... rest) : StateScope(changed(Value{first, rest...})) {}

 private:
  static ThreadState changed(Value v) {
    ThreadState s = thread_state();
    s.*Field = v;
    return s;
  }
};

// The engine's two fields. A model built inside
//
//   { DeviceScope scope(kMeta); model = models::make_model(config); }
//
// has every parameter on that device, and ops put their outputs on their
// inputs' device. Code that fills a host buffer names kCPU itself.
using DeviceScope = FieldScope<&ThreadState::device>;
using TagScope = FieldScope<&ThreadState::tag>;
inline Device default_device() { return thread_state().device; }
inline Tag current_tag() { return thread_state().tag; }

}  // namespace mp
