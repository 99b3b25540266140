// safetensors I/O, state dicts and atomic writes: round trips, a file made by
// the Python safetensors library, and every kind of malformed file.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "engine/error.h"
#include "engine/ops.h"
#include "nn/atomic_file.h"
#include "nn/layer_norm.h"
#include "nn/linear.h"
#include "nn/safetensors.h"
#include "nn/state_dict.h"
#include "tests/support/temp_dir.h"

using namespace mp;
using namespace mp::nn;
namespace fs = std::filesystem;

namespace {

using test::TempDir;

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_raw(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), std::streamsize(bytes.size()));
}

// A safetensors file from a header text and data bytes (header size = header.size()).
std::string make_bytes(const std::string& header, const std::string& data) {
  uint64_t n = header.size();
  std::string out(reinterpret_cast<const char*>(&n), 8);
  return out + header + data;
}

std::string fixture(const std::string& name) {
  const char* dir = std::getenv("MP_FIXTURES");
  return std::string(dir ? dir : "tests/fixtures") + "/nn/" + name;
}

// Opening `path` must throw an mp::Error naming it (and `needle`, if given).
void check_rejected(const std::string& path, const std::string& needle = "") {
  try {
    SafetensorsFile f = SafetensorsFile::open(path);
    FAIL("accepted a bad file: ", path);
  } catch (const Error& e) {
    std::string msg = e.what();
    CAPTURE(msg);
    CHECK(msg.find(path) != std::string::npos);
    if (!needle.empty()) CHECK(msg.find(needle) != std::string::npos);
  }
}

bool has_temp_files(const fs::path& dir) {
  for (const auto& entry : fs::directory_iterator(dir))
    if (entry.path().filename().string().find(".tmp.") != std::string::npos) return true;
  return false;
}

}  // namespace

TEST_CASE("half_to_float: normals, subnormals, zero, infinities, NaN") {
  CHECK(half_to_float(0x3c00) == 1.f);
  CHECK(half_to_float(0xc100) == -2.5f);
  CHECK(half_to_float(0x7bff) == 65504.f);
  CHECK(half_to_float(0x0400) == std::ldexp(1.f, -14));
  CHECK(half_to_float(0x0001) == std::ldexp(1.f, -24));
  CHECK(half_to_float(0x03ff) == std::ldexp(1023.f, -24));
  CHECK(std::signbit(half_to_float(0x8000)));
  CHECK(half_to_float(0x7c00) == std::numeric_limits<float>::infinity());
  CHECK(half_to_float(0xfc00) == -std::numeric_limits<float>::infinity());
  CHECK(std::isnan(half_to_float(0x7e00)));
}

TEST_CASE("safetensors round trip: every dtype we write, metadata, views, padding") {
  TempDir dir;
  std::string path = dir / "rt.safetensors";
  Tensor f32 = Tensor::from_vector(std::vector<float>{1.5f, -2.f, 3.25f, 0.f, 1e-30f, -7.f}, {2, 3});
  Tensor bf = f32.to(DType::bf16);
  Tensor i32 = Tensor::from_vector(std::vector<int32_t>{-2147483647 - 1, 0, 2147483647}, {3});
  Tensor f64 = Tensor::from_vector(std::vector<double>{0.1, -1e300}, {1, 2});
  Tensor scalar = Tensor::full({}, 5.0);
  Tensor empty = Tensor::zeros({0, 4});
  Tensor view = f32.transpose(0, 1);  // not contiguous: (3, 2)
  save_safetensors(path,
                   {{"z.f32", f32}, {"a.bf16", bf}, {"i32", i32}, {"f64", f64}, {"scalar", scalar}, {"empty", empty},
                    {"view", view}},
                   {{"format", "pt"}, {"note", "round trip"}});
  CHECK_FALSE(has_temp_files(dir.path));

  std::string bytes = read_all(path);
  uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  CHECK(n % 8 == 0);
  CHECK(bytes[8] == '{');

  SafetensorsFile f = SafetensorsFile::open(path);
  CHECK(f.names() == std::vector<std::string>{"a.bf16", "empty", "f64", "i32", "scalar", "view", "z.f32"});
  CHECK(f.metadata().at("note") == "round trip");
  CHECK(f.info("a.bf16").dtype == StDType::BF16);
  CHECK(f.info("z.f32").shape == Shape{2, 3});
  CHECK(f.info("scalar").shape == Shape{});
  // Data packed in name order.
  CHECK(f.info("a.bf16").begin == 0);
  CHECK(f.info("empty").begin == f.info("a.bf16").end);

  CHECK(ops::max_abs_diff(f.load("z.f32"), f32) == 0.0);
  Tensor bf_back = f.load("a.bf16", DType::bf16);
  CHECK(bf_back.dtype() == DType::bf16);
  CHECK(std::memcmp(bf_back.raw(), bf.raw(), bf.nbytes()) == 0);
  Tensor i_back = f.load("i32", DType::i32);
  CHECK(std::memcmp(i_back.raw(), i32.raw(), i32.nbytes()) == 0);
  Tensor d_back = f.load("f64", DType::f64);
  CHECK(d_back.at({0, 0}) == 0.1);
  CHECK(d_back.at({0, 1}) == -1e300);
  CHECK(f.load("scalar").item() == 5.0);
  CHECK(f.load("empty").shape() == Shape{0, 4});
  CHECK(ops::max_abs_diff(f.load("view"), view.contiguous()) == 0.0);

  // Conversions on load, and the tag asked for.
  Tensor as_bf = f.load("z.f32", DType::bf16, Tag::adapter);
  CHECK(as_bf.tag() == Tag::adapter);
  CHECK(std::memcmp(as_bf.raw(), bf.raw(), bf.nbytes()) == 0);
  CHECK(f.load("f64").at({0, 0}) == doctest::Approx(0.1));

  // Loading into an existing tensor, and the errors.
  Tensor dst = Tensor::zeros({2, 3});
  f.load_into("z.f32", dst);
  CHECK(ops::max_abs_diff(dst, f32) == 0.0);
  CHECK_THROWS_AS(f.load_into("z.f32", Tensor::zeros({3, 2})), Error);
  CHECK_THROWS_AS(f.load("i32", DType::f32), Error);
  CHECK_THROWS_AS(f.load("z.f32", DType::i32), Error);
  CHECK_THROWS_AS(f.info("nope"), Error);

  // Writing errors.
  CHECK_THROWS_AS(save_safetensors(dir / "dup.safetensors", {{"a", f32}, {"a", f32}}), Error);
  CHECK_THROWS_AS(save_safetensors(dir / "meta.safetensors", {{"__metadata__", f32}}), Error);
  CHECK_THROWS_AS(save_safetensors(dir / "utf8.safetensors", {{"bad\xff", f32}}), Error);
  CHECK_FALSE(fs::exists(dir / "utf8.safetensors"));
}

TEST_CASE("safetensors: a file written by Python's safetensors library") {
  std::string path = fixture("tiny.safetensors");
  SafetensorsFile f = SafetensorsFile::open(path);
  CHECK(f.metadata().at("format") == "pt");
  CHECK(f.names().size() == 10);

  CHECK(f.load("f32").to_floats() == std::vector<float>{-1, -0.5f, 0, 0.5f, 1, 1.5f});
  CHECK(f.load("bf16").to_floats() == std::vector<float>{1, -2.5f, 3.140625f, 0.0078125f});
  std::vector<float> h = f.load("f16").to_floats();
  REQUIRE(h.size() == 9);
  CHECK(h[0] == 1.f);
  CHECK(h[1] == -2.5f);
  CHECK(h[2] == 65504.f);
  CHECK(h[3] == std::ldexp(1.f, -14));
  CHECK(h[4] == std::ldexp(1.f, -24));
  CHECK(h[5] == 0.f);
  CHECK(h[6] == std::numeric_limits<float>::infinity());
  CHECK(h[7] == -std::numeric_limits<float>::infinity());
  CHECK(std::isnan(h[8]));
  Tensor d = f.load("f64", DType::f64);
  CHECK(d.at({0, 0}) == 0.1);
  CHECK(d.at({0, 1}) == -1e300);
  Tensor i = f.load("i32", DType::i32);
  CHECK(i.at({1, 1}) == 2147483647.0);
  CHECK(i.at({0, 1}) == -2.0);
  Tensor l = f.load("i64", DType::i32);
  CHECK(l.dtype() == DType::i32);
  CHECK(l.at({3}) == -2147483648.0);
  CHECK(l.at({2}) == 2147483647.0);
  try {
    f.load("i64_big", DType::i32);
    FAIL("2^40 fit in i32?");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find(path) != std::string::npos);
    CHECK(std::string(e.what()).find("i64_big") != std::string::npos);
  }
  CHECK(f.load("scalar").item() == 7.0);
  CHECK(f.load("empty").shape() == Shape{0, 3});
  CHECK(f.info("h.0.attn.c_attn.weight").shape == Shape{2, 2});
}

TEST_CASE("safetensors: every strict prefix of a valid file is rejected") {
  TempDir dir;
  std::string good = dir / "good.safetensors";
  save_safetensors(good, {{"w", Tensor::full({3, 5}, 1.0)}, {"b", Tensor::full({5}, 2.0)}});
  std::string bytes = read_all(good);
  std::string cut = dir / "cut.safetensors";
  for (size_t len = 0; len < bytes.size(); ++len) {
    CAPTURE(len);
    write_raw(cut, bytes.substr(0, len));
    check_rejected(cut);
  }
  // One byte too many is fine (the reference implementation is stricter; we only need no overlap).
  write_raw(cut, bytes);
  CHECK_NOTHROW(SafetensorsFile::open(cut));
}

TEST_CASE("safetensors: corrupted header bytes never crash") {
  TempDir dir;
  std::string good = dir / "good.safetensors";
  save_safetensors(good, {{"w", Tensor::full({2, 2}, 1.0)}, {"x.bias", Tensor::zeros({2}, DType::bf16)}},
                   {{"k", "v"}});
  std::string bytes = read_all(good);
  uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  std::string bad = dir / "bad.safetensors";
  int rejected = 0;
  for (size_t pos = 0; pos < 8 + n; ++pos) {
    for (char c : {'\xff', '\0', '"', '{', ']', '9', '-', 'x'}) {
      std::string b = bytes;
      b[pos] = c;
      write_raw(bad, b);
      try {
        SafetensorsFile f = SafetensorsFile::open(bad);
        for (const std::string& name : f.names()) (void)f.load(name);  // whatever parsed must load
      } catch (const Error& e) {
        CHECK(std::string(e.what()).find(bad) != std::string::npos);
        ++rejected;
      }
    }
  }
  CHECK(rejected > 0);
}

TEST_CASE("safetensors: each kind of malformed file gives an mp::Error naming the file and key") {
  TempDir dir;
  std::string p = dir / "bad.safetensors";
  auto reject = [&](const std::string& bytes, const std::string& needle) {
    CAPTURE(needle);
    write_raw(p, bytes);
    check_rejected(p, needle);
  };
  const std::string eight(8, '\0');

  reject("", "too short");
  reject("abc", "too short");
  {  // header size larger than the file, and absurd
    uint64_t n = 1000;
    reject(std::string(reinterpret_cast<const char*>(&n), 8) + "{}", "past the end of the file");
    n = uint64_t(1) << 62;
    reject(std::string(reinterpret_cast<const char*>(&n), 8) + "{}", "not plausible");
    n = 200u << 20;
    reject(std::string(reinterpret_cast<const char*>(&n), 8) + "{}", "not plausible");
  }
  reject(make_bytes("{\"a\": ", ""), "not valid JSON");
  reject(make_bytes("[1, 2]", ""), "not an object");
  reject(make_bytes("\"str\"", ""), "not an object");
  reject(make_bytes(std::string(100, '[') + std::string(100, ']'), ""), "nested more than 8 deep");
  reject(make_bytes(R"({"w": {"dtype": "F32", "shape": [1e999], "data_offsets": [0, 4]}})", eight),
         "header line 1, column 34, key \"w.shape[0]\": the number 1e999 is out of range");
  reject(make_bytes(R"({"w": {"dtype": "F32", "dtype": "F64", "shape": [1], "data_offsets": [0, 4]}})", eight),
         "header line 1, column 30, key \"w.dtype\": appears twice");
  reject(make_bytes(R"({"w": 5})", ""), "'w'");
  reject(make_bytes(R"({"w": {"shape": [1], "data_offsets": [0, 4]}})", eight), "'w': missing or non-string 'dtype'");
  reject(make_bytes(R"({"w": {"dtype": "F8_E4M3", "shape": [1], "data_offsets": [0, 1]}})", eight),
         "unsupported dtype 'F8_E4M3'");
  reject(make_bytes(R"({"w": {"dtype": 3, "shape": [1], "data_offsets": [0, 4]}})", eight), "'w'");
  reject(make_bytes(R"({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})", eight), "'w': shape");
  reject(make_bytes(R"({"w": {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 4]}})", eight), "'w': shape");
  reject(make_bytes(R"({"w": {"dtype": "F32", "shape": "2", "data_offsets": [0, 4]}})", eight), "'w'");
  reject(make_bytes(R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 4]}})", eight),
         "too large");
  reject(make_bytes(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 400]}})", eight),
         "'w': data_offsets [0, 400] run past the end");
  reject(make_bytes(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 8]}})", eight), "needs 4");
  reject(make_bytes(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}})", eight), "end before");
  reject(make_bytes(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0]}})", eight), "'w': 'data_offsets'");
  reject(make_bytes(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}})", eight), "'w'");
  reject(make_bytes(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},)"
                    R"( "b": {"dtype": "F32", "shape": [1], "data_offsets": [2, 6]}})",
                    eight),
         "overlap");
  reject(make_bytes(R"({"__metadata__": {"k": 1}})", ""), "'__metadata__'");
  reject(make_bytes(R"({"__metadata__": [1]})", ""), "'__metadata__'");

  // A directory is not a file; a missing file says so.
  check_rejected(dir.path.string(), "not a regular file");
  check_rejected(dir / "missing.safetensors", "cannot open");

  // And a well-formed hand-made file loads.
  float one = 1.f;
  write_raw(p, make_bytes(R"({"w": {"dtype": "F32", "shape": [], "data_offsets": [0, 4]}})",
                          std::string(reinterpret_cast<const char*>(&one), 4)));
  CHECK(SafetensorsFile::open(p).load("w").item() == 1.0);
}

TEST_CASE("atomic writes: a failed save leaves the old file intact and no temporary") {
  TempDir dir;
  std::string path = dir / "model.safetensors";
  save_safetensors(path, {{"w", Tensor::full({4}, 1.0)}});
  std::string before = read_all(path);

  // A writer that fails halfway.
  CHECK_THROWS_AS(write_file_atomically(path,
                                        [&](std::FILE* f) {
                                          write_bytes(f, "garbage", 7, path);
                                          fail("{}: simulated failure", path);
                                        }),
                  Error);
  CHECK(read_all(path) == before);
  CHECK_FALSE(has_temp_files(dir.path));

  // A tensor that cannot be written (undefined).
  CHECK_THROWS_AS(save_safetensors(path, {{"w", Tensor::full({4}, 2.0)}, {"x", Tensor()}}), Error);
  CHECK(read_all(path) == before);

  // The rename fails: the target is a directory.
  std::string as_dir = dir / "taken";
  fs::create_directories(as_dir);
  CHECK_THROWS_AS(save_safetensors(as_dir, {{"w", Tensor::full({4}, 2.0)}}), Error);
  CHECK(fs::is_directory(as_dir));
  CHECK_FALSE(has_temp_files(dir.path));

  // The directory does not exist.
  try {
    save_safetensors(dir / "no/such/dir/m.safetensors", {{"w", Tensor::full({4}, 2.0)}});
    FAIL("wrote into a missing directory");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("no/such/dir/m.safetensors") != std::string::npos);
  }

  // A successful save replaces the file.
  save_safetensors(path, {{"w", Tensor::full({4}, 2.0)}});
  CHECK(SafetensorsFile::open(path).load("w").at({0}) == 2.0);
  write_file_atomically(dir / "t.txt", std::string_view("hello"));
  CHECK(read_all(dir / "t.txt") == "hello");
}

namespace {

struct Net : Module {
  std::shared_ptr<Linear> c_attn = add_module("c_attn", std::make_shared<Linear>(3, 4, true, Layout::conv1d));
  std::shared_ptr<LayerNorm> ln = add_module("ln", std::make_shared<LayerNorm>(4));
  Tensor mask = add_buffer("mask", Tensor::zeros({2}));
};

}  // namespace

TEST_CASE("state_dict: save, load by name, rename hook, and all problems in one message") {
  TempDir dir;
  std::string path = dir / "net.safetensors";
  Net a, b;
  ops::fill(a.mask, 3.0);
  NamedTensors sd = state_dict(a);
  REQUIRE(sd.size() == 5);
  CHECK(sd[0].first == "c_attn.weight");
  CHECK(sd[4].first == "mask");
  save_safetensors(path, sd);

  SafetensorsFile f = SafetensorsFile::open(path);
  LoadResult r = load_state_dict(b, f);
  CHECK(r.loaded == 5);
  CHECK(ops::max_abs_diff(a.c_attn->weight.value(), b.c_attn->weight.value()) == 0.0);
  CHECK(b.mask.at({1}) == 3.0);

  // A model whose frozen weight lives in bf16 loads the f32 checkpoint, converted.
  Net c;
  c.c_attn->weight.value() = c.c_attn->weight.value().to(DType::bf16);
  load_state_dict(c, f);
  CHECK(ops::max_abs_diff(c.c_attn->weight.value().to(DType::f32), a.c_attn->weight.value()) < 1e-2);

  // HF-style prefixes, and a skipped key.
  NamedTensors prefixed;
  for (auto& [k, t] : sd) prefixed.emplace_back("transformer." + k, t);
  prefixed.emplace_back("lm_head.weight", Tensor::zeros({1}));
  KeyRename rename = [](const std::string& k) -> std::optional<std::string> {
    if (k == "lm_head.weight") return std::nullopt;
    if (k.starts_with("transformer.")) return k.substr(12);
    return k;
  };
  save_safetensors(path, prefixed);
  Net d;
  LoadResult rd = load_state_dict(d, SafetensorsFile::open(path), true, rename);
  CHECK(rd.loaded == 5);
  CHECK(rd.skipped == std::vector<std::string>{"lm_head.weight"});

  // Every problem at once.
  NamedTensors wrong = {{"c_attn.weight", Tensor::zeros({3, 5})},
                        {"c_attn.bias", Tensor::zeros({4})},
                        {"ln.weight", Tensor::zeros({7})},
                        {"extra.weight", Tensor::zeros({1})},
                        {"mask", Tensor::from_vector(std::vector<int32_t>{1, 2}, {2})}};
  save_safetensors(path, wrong);
  Net e;
  Tensor bias_before = e.c_attn->bias.value().clone();
  try {
    load_state_dict(e, SafetensorsFile::open(path));
    FAIL("loaded a mismatched checkpoint");
  } catch (const Error& err) {
    std::string msg = err.what();
    CAPTURE(msg);
    CHECK(msg.find(path) != std::string::npos);
    CHECK(msg.find("missing keys: ln.bias") != std::string::npos);
    CHECK(msg.find("unexpected keys: extra.weight") != std::string::npos);
    CHECK(msg.find("c_attn.weight: checkpoint has (3, 5), model expects (3, 4)") != std::string::npos);
    CHECK(msg.find("ln.weight: checkpoint has (7), model expects (4)") != std::string::npos);
    CHECK(msg.find("mask: checkpoint holds integer values, model expects f32") != std::string::npos);
  }
  CHECK(ops::max_abs_diff(e.c_attn->bias.value(), bias_before) == 0.0);  // nothing copied

  // Non-strict: missing and unexpected are reported, not thrown.
  std::map<std::string, Tensor> partial = {{"ln.weight", Tensor::full({4}, 2.0)}, {"other", Tensor::zeros({1})}};
  LoadResult rp = load_state_dict(e, partial, false);
  CHECK(rp.loaded == 1);
  CHECK(rp.unexpected == std::vector<std::string>{"other"});
  CHECK(rp.missing.size() == 4);
  CHECK(e.ln->weight.value().at({0}) == 2.0);
  CHECK_THROWS_AS(load_state_dict(e, partial, true), Error);
}
