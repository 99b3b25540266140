// What a run reads back of its own files when it resumes: the checkpoint's
// metadata (train/checkpoint_meta.h) and the training log. Damaged or
// hand-edited, each is an mp::Error naming the file and the key.
#include <doctest/doctest.h>

#include <string>

#include "engine/error.h"
#include "tests/support/minipeft.h"
#include "train/checkpoint_meta.h"
#include "train/train_log.h"

using namespace mp;

TEST_CASE("checkpoint metadata: written and read back; each damage an error naming the key") {
  train::CheckpointMeta m;
  m.step = 40;
  m.rng = {1, 2, 3, 4};
  m.run = {{"model", "gpt2-tiny"}, {"batch", 4}};
  m.ranks = 2;
  const train::CheckpointMeta back = train::parse_checkpoint_meta(train::checkpoint_meta_json(m), "c.safetensors");
  CHECK(back.step == 40);
  CHECK(back.rng.dropout_counter == 3);
  CHECK(back.rng.dropout_instances == 4);
  CHECK(back.run == m.run);
  CHECK(back.ranks == 2);

  auto expect = [](const std::string& text, const std::string& what) {
    CAPTURE(text);
    const std::string message = "c.safetensors metadata \"minipeft_checkpoint\"" + what;
    CHECK_THROWS_WITH_AS(train::parse_checkpoint_meta(text, "c.safetensors"), message.c_str(), Error);
  };
  const std::string rest = R"("rng": [1, 2, 3, 4], "run": {})";
  expect(R"({"step": 1e999, )" + rest + "}", " line 1, column 10, key \"step\": the number 1e999 is out of range");
  expect(R"({"step": "3", )" + rest + "}", ", key \"step\": must be an integer, not string");
  expect(R"({"step": -3, )" + rest + "}", ", key \"step\": must be a step >= 0, not -3");
  expect(R"({"step": 3, "step": 4, )" + rest + "}", " line 1, column 18, key \"step\": appears twice");
  expect(R"({"rng": [1, 2, 3, 4], "run": {}})", ": missing key \"step\"");
  expect(R"({"step": 3, "rng": [1, 2, 3], "run": {}})", ", key \"rng\": must be 4 integers (seed and 3 counters), not [1,2,3]");
  expect(R"({"step": 3, "rng": [1, 2, -3, 4], "run": {}})", ", key \"rng[2]\": -3 is out of range (0 to 18446744073709551615)");
  expect(R"({"step": 3, "rng": [1, 2, 3, 4], "run": 7})", ", key \"run\": must be an object (the run's model, method, batch, ...)");
  expect(R"({"step": 3, "rng": [1, 2, 3, 4], "run": {}, "ranks": 0})", ", key \"ranks\": must be a count of processes >= 1, not 0");
  expect("[]", ": expected a JSON object, got array");
}

TEST_CASE("a resumed run's training log: a damaged line is an error naming the line and the key") {
  test::TempDir d("train_log_bad");
  const std::string path = d / "log.jsonl";
  test::write_file(path, "{\"step\": 1, \"loss\": 2.5}\n{\"step\": 2.5, \"loss\": 1e999}\n");
  CHECK_THROWS_WITH_AS(train::TrainLog::resume(path, 1),
                       (path + " line 2, column 23, key \"loss\": the number 1e999 is out of range").c_str(), Error);
  test::write_file(path, "{\"step\": 1, \"loss\": 2.5}\n{\"step\": \"2\"}\n");
  CHECK_THROWS_WITH_AS(train::TrainLog::resume(path, 1), (path + " line 2, key \"step\": must be an integer, not string").c_str(),
                       Error);
  test::write_file(path, "{\"step\": 1, \"loss\": 2.5}\n{\"step\": 2}\n{\"step\": 3, \"lo");  // torn last line: dropped
  train::TrainLog::resume(path, 1);
}
