// The thread's state (engine/thread_state.h): one guard that restores the
// whole state it found, on any exit.
#include <doctest/doctest.h>

#include "engine/error.h"
#include "engine/thread_state.h"

using namespace mp;

static bool same(const ThreadState& a, const ThreadState& b) {
  return a.device == b.device && a.tag == b.tag && a.grad_enabled == b.grad_enabled &&
         a.autocast.dtype == b.autocast.dtype && a.autocast.cache == b.autocast.cache && a.weight_dtype == b.weight_dtype;
}

TEST_CASE("a field scope changes its field only, and nested scopes unwind in order") {
  const ThreadState start = thread_state();
  {
    TagScope weights(Tag::weights);
    CHECK(current_tag() == Tag::weights);
    CHECK(thread_state().device == start.device);
    {
      DeviceScope meta(kMeta);
      FieldScope<&ThreadState::grad_enabled> off(false);
      CHECK(default_device() == kMeta);
      CHECK(current_tag() == Tag::weights);
      CHECK_FALSE(thread_state().grad_enabled);
    }
    CHECK(default_device() == start.device);
    CHECK(thread_state().grad_enabled == start.grad_enabled);
    CHECK(current_tag() == Tag::weights);
  }
  CHECK(same(thread_state(), start));
}

TEST_CASE("a whole-state scope replaces every field and restores them after an exception") {
  const ThreadState start = thread_state();
  ThreadState other;
  other.device = kMeta;
  other.tag = Tag::optimizer;
  other.grad_enabled = false;
  other.autocast.dtype = DType::bf16;
  other.weight_dtype = DType::bf16;
  try {
    StateScope s(other);
    CHECK(same(thread_state(), other));
    TagScope inner(Tag::grads);
    throw Error("leaving early");
  } catch (const Error&) {
  }
  CHECK(same(thread_state(), start));
}

TEST_CASE("a state the engine cannot run under is refused and changes nothing") {
  const ThreadState start = thread_state();
  CHECK_THROWS_WITH_AS([] { FieldScope<&ThreadState::autocast> s(Autocast{DType::i32}); }(),
                       doctest::Contains("autocast dtype must be f32 or bf16, not i32"), Error);
  CHECK_THROWS_WITH_AS([] { FieldScope<&ThreadState::weight_dtype> s(DType::i32); }(),
                       doctest::Contains("weight dtype must be f32, bf16 or f64, not i32"), Error);
  CHECK(same(thread_state(), start));
}
