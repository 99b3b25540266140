#include "train/train_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <utility>

#include "engine/error.h"
#include "nn/atomic_file.h"
#include "nn/json_input.h"

namespace mp::train {

TrainLog::TrainLog(const std::string& path, int flags) : path_(path) {
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | flags, 0644);
  if (fd_ < 0) fail("{}: cannot open the training log: {}", path, std::strerror(errno));
}

TrainLog TrainLog::create(const std::string& path) { return TrainLog(path, O_TRUNC); }

TrainLog TrainLog::resume(const std::string& path, int64_t step) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  const std::string all = text.str();
  std::string kept;
  size_t begin = 0;
  for (int line_no = 1; begin < all.size(); ++line_no) {
    const size_t end = all.find('\n', begin);
    if (end == std::string::npos) break;  // the last line, torn by a kill mid-write
    const std::string line = all.substr(begin, end - begin);
    begin = end + 1;
    const nn::JsonSource source{path, line_no};
    if (nn::json_value<int64_t>(nn::parse_json(line, source), "step", source) <= step) kept += line + "\n";
  }
  nn::write_file_atomically(path, kept);
  return TrainLog(path, 0);
}

TrainLog::TrainLog(TrainLog&& o) noexcept : path_(std::move(o.path_)), fd_(std::exchange(o.fd_, -1)) {}

TrainLog& TrainLog::operator=(TrainLog&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    path_ = std::move(o.path_);
    fd_ = std::exchange(o.fd_, -1);
  }
  return *this;
}

TrainLog::~TrainLog() {
  if (fd_ >= 0) ::close(fd_);
}

void TrainLog::append(const StepRecord& r) {
  nlohmann::json j = {{"step", r.step}, {"loss", r.loss}, {"lr", r.lr}, {"grad_norm", r.grad_norm},
                      {"seconds", r.seconds}, {"mem_bytes", r.mem_bytes}};
  if (r.val_loss >= 0) j["val_loss"] = r.val_loss;
  const std::string line = j.dump() + "\n";
  for (size_t done = 0; done < line.size();) {
    ssize_t n = ::write(fd_, line.data() + done, line.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("{}: cannot write the training log: {}", path_, std::strerror(errno));
    done += size_t(n);
  }
}

void TrainLog::sync() {
  if (fd_ >= 0 && ::fsync(fd_) != 0) fail("{}: fsync of the training log failed: {}", path_, std::strerror(errno));
}

}  // namespace mp::train
