// HandleRequest without a socket: who may change what (SO_PEERCRED uid vs
// the mounting user), and that every malformed request is an error reply,
// never an exception. The socket side is tests/control_robust_test.py.

#include "src/control/server/protocol.h"

#include <gtest/gtest.h>

#include <string>

#include "src/cache/temp_engine.h"

namespace tierfs::control {
namespace {

using nlohmann::json;

constexpr uid_t kOwner = 1000;

class ProtocolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NE(temp_.engine(), nullptr);
    info_.owner = kOwner;
  }
  json Ask(const json& request, uid_t peer) {
    return HandleRequest(*engine_, info_, request, peer);
  }
  std::string Mode() {
    return Ask({{"cmd", "get"}, {"key", "mode"}}, 0)["tunables"][0]["value"];
  }

  cache::TempEngine temp_;
  cache::CacheEngine* const engine_ = temp_.engine();
  DaemonInfo info_;
};

TEST_F(ProtocolTest, OnlyRootAndTheMountingUserMayChangeSettings) {
  const json set = {{"cmd", "set"}, {"key", "mode"}, {"value", "writethrough"}};
  for (const json& change : {set, json{{"cmd", "policy"}, {"name", "cleaner"}},
                             json{{"cmd", "flush"}, {"timeout_ms", 0}},
                             json{{"cmd", "invalidate"}}}) {
    json reply = Ask(change, 65534);
    EXPECT_FALSE(reply["ok"]) << change;
    EXPECT_NE(reply["error"].get<std::string>().find(
                  "permission denied: only root or the mounting user (uid "
                  "1000)"),
              std::string::npos)
        << reply;
  }
  EXPECT_EQ(Mode(), "writeback");
  EXPECT_EQ(engine_->Snapshot().policy, "tinylfu");
  // Reading is not changing.
  EXPECT_TRUE(Ask({{"cmd", "stats"}}, 65534)["ok"]);
  EXPECT_TRUE(Ask({{"cmd", "volumes"}}, 65534)["ok"]);
  EXPECT_TRUE(Ask({{"cmd", "get"}}, 65534)["ok"]);
  // The owner and root may.
  EXPECT_TRUE(Ask(set, kOwner)["ok"]);
  EXPECT_EQ(Mode(), "writethrough");
  EXPECT_TRUE(
      Ask({{"cmd", "set"}, {"key", "mode"}, {"value", "writeback"}}, 0)["ok"]);
  EXPECT_EQ(Mode(), "writeback");
}

TEST_F(ProtocolTest, MalformedRequestsAreErrorRepliesAndChangeNothing) {
  const json bad[] = {
      json(nullptr),
      json(42),
      json("stats"),
      json::array(),
      json::object(),
      {{"cmd", 5}},
      {{"cmd", "nope"}},
      {{"cmd", "set"}},
      {{"cmd", "set"}, {"key", "mode"}},
      {{"cmd", "set"}, {"key", 1}, {"value", "x"}},
      {{"cmd", "set"}, {"key", "mode"}, {"value", json::array()}},
      {{"cmd", "set"}, {"key", "mode"}, {"value", "fast"}},
      {{"cmd", "set"}, {"key", "migration_threshold"}, {"value", "-1"}},
      {{"cmd", "set"}, {"key", "policy.nope"}, {"value", "1"}},
      {{"cmd", "policy"}},
      {{"cmd", "policy"}, {"name", "mru"}},
      {{"cmd", "policy"}, {"name", json::object()}},
      {{"cmd", "flush"}, {"timeout_ms", -1}},
      {{"cmd", "flush"}, {"timeout_ms", "1"}},
      {{"cmd", "flush"}, {"timeout_ms", 0.5}},
      {{"cmd", "invalidate"}, {"volume", 5}},
      {{"cmd", "invalidate"}, {"volume", "missing.img"}},
      {{"cmd", "get"}, {"key", true}},
      {{"cmd", "get"}, {"key", "nokey"}},
  };
  const std::string mode = Mode();
  const auto before = engine_->Snapshot();
  for (const json& request : bad) {
    json reply;
    ASSERT_NO_THROW(reply = Ask(request, 0)) << request;
    EXPECT_EQ(reply["ok"], false) << request;
    EXPECT_FALSE(reply["error"].get<std::string>().empty()) << request;
  }
  EXPECT_EQ(Mode(), mode);
  EXPECT_EQ(engine_->Snapshot().policy, before.policy);
  EXPECT_EQ(engine_->Snapshot().migration_threshold,
            before.migration_threshold);
  // A flush timeout too large for the clock still works (nothing dirty).
  EXPECT_TRUE(Ask({{"cmd", "flush"}, {"timeout_ms", UINT64_MAX}}, 0)["ok"]);
}

}  // namespace
}  // namespace tierfs::control
