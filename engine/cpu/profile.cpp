#include "engine/cpu/profile.h"

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>

namespace mp::cpu {

namespace {

class Profile {
 public:
  static Profile& instance() {
    static Profile p;
    return p;
  }
  int level() const { return level_; }
  void add(const std::string& kind, double seconds) {
    Entry& e = totals_[kind];
    e.seconds += seconds;
    ++e.calls;
  }
  ~Profile() {
    if (level_ == 0 || totals_.empty()) return;
    double all = 0;
    for (const auto& [kind, e] : totals_) all += e.seconds;
    std::multimap<double, std::string, std::greater<>> by_time;
    for (const auto& [kind, e] : totals_) by_time.emplace(e.seconds, kind);
    std::fprintf(stderr, "MP_PROFILE: cpu kernel time by kind (%.3f s in all)\n", all);
    for (const auto& [seconds, kind] : by_time) {
      const Entry& e = totals_[kind];
      std::fprintf(stderr, "  %-44s %9.3f s %5.1f%% %8lld calls\n", kind.c_str(), e.seconds,
                   all > 0 ? 100 * e.seconds / all : 0.0, static_cast<long long>(e.calls));
    }
  }

 private:
  struct Entry {
    double seconds = 0;
    int64_t calls = 0;
  };
  Profile() {
    const char* env = std::getenv("MP_PROFILE");
    level_ = env ? std::atoi(env) : 0;
  }
  int level_ = 0;
  std::map<std::string, Entry> totals_;
};

}  // namespace

KernelCall::KernelCall(const char* kind) : on_(Profile::instance().level() > 0), kind_(kind) {
  if (on_) t0_ = std::chrono::steady_clock::now();
}

KernelCall::KernelCall(const char* kind, const Tensor& a, bool ta, const Tensor& b, bool tb, const Tensor& out) : KernelCall(kind) {
  if (on_ && Profile::instance().level() > 1) {
    // "matmul 1x256x2304 K768 NN f32"
    detail_ = std::string(kind) + " " + std::to_string(out.size(0)) + "x" + std::to_string(out.size(1)) + "x" +
              std::to_string(out.size(2)) + " K" + std::to_string(ta ? a.size(1) : a.size(2)) + " " +
              (ta ? "T" : "N") + (tb ? "T" : "N") + " " + std::string(dtype_name(b.dtype()));
  }
}

KernelCall::KernelCall(const char* kind, const Tensor& out, const Tensor& in) : KernelCall(kind) {
  if (on_ && Profile::instance().level() > 1) {
    detail_ = std::string(kind) + " " + shape_str(out.shape());
    if (!out.is_contiguous() || (in.defined() && !in.is_contiguous())) detail_ += " strided";
  }
}

KernelCall::~KernelCall() {
  if (!on_) return;
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  Profile::instance().add(detail_.empty() ? std::string(kind_) : detail_, s);
}

}  // namespace mp::cpu
