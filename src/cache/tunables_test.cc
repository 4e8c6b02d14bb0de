// The tunables table against what it describes: the engine's defaults, the
// policies' keys, and tierfs(5), which must list every key.

#include "src/cache/tunables.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <set>
#include <string>

#include "policy/registry.h"
#include "src/cache/temp_engine.h"

namespace tierfs::cache {
namespace {

class TunablesTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_NE(engine_, nullptr); }
  std::string Get(std::string_view key) {
    for (const Tunable& t : ListTunables(*engine_)) {
      if (t.key == key) return t.value;
    }
    return "(none)";
  }

  TempEngine temp_;  // the engine's defaults, as a mount without --set
  CacheEngine* const engine_ = temp_.engine();
};

// The table's defaults are the engine's and the default policy's; the keys
// of other policies are not listed while the default policy runs.
TEST_F(TunablesTest, DefaultsAreTheEnginesAndTheDefaultPolicys) {
  std::set<std::string> listed;
  for (const Tunable& t : ListTunables(*engine_)) {
    const TunableSpec* spec = FindTunable(t.key);
    ASSERT_NE(spec, nullptr) << t.key;
    EXPECT_EQ(t.value, spec->default_value) << t.key;
    EXPECT_EQ(t.help, spec->help) << t.key;
    listed.insert(t.key);
  }
  std::set<std::string> policy_keys;
  for (const auto& [key, value] : engine_->Snapshot().policy_config) {
    policy_keys.insert(std::string(kPolicyPrefix) + key);
  }
  for (const TunableSpec& spec : TunableTable()) {
    const std::string key(spec.key);
    if (key.starts_with(kPolicyPrefix) && !policy_keys.count(key)) continue;
    EXPECT_TRUE(listed.count(key)) << key;
  }
}

TEST(TunableTableTest, HasEveryKeyOfEveryPolicy) {
  for (const std::string& name : policy::PolicyNames()) {
    std::string error;
    auto p = policy::CreatePolicy(name, policy::PolicyParams{1024, 65536}, {},
                                  &error);
    ASSERT_TRUE(p.ok()) << error;
    for (const auto& [key, value] : (*p)->EmitConfigValues()) {
      const TunableSpec* spec = FindTunable(std::string(kPolicyPrefix) + key);
      ASSERT_NE(spec, nullptr) << name << " emits " << key;
      EXPECT_EQ(spec->parse, nullptr) << "the policy judges " << key;
    }
  }
}

std::string ReadFileNamedBy(const char* variable) {
  const char* path = std::getenv(variable);
  EXPECT_NE(path, nullptr) << "meson passes the file in " << variable;
  std::ifstream in(path == nullptr ? "" : path);
  EXPECT_TRUE(in) << variable << "=" << path;
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(TunableTableTest, ManPageAndCompletionListEveryKey) {
  const std::string page = ReadFileNamedBy("TIERFS_MAN5");
  const std::string completion = ReadFileNamedBy("TIERFS_COMPLETION");
  for (const TunableSpec& spec : TunableTable()) {
    const std::string key(spec.key);
    EXPECT_NE(page.find("\n.B " + key + "\n"), std::string::npos)
        << "tierfs(5) does not list " << key;
    if (spec.configure != nullptr) {
      EXPECT_NE(completion.find(key), std::string::npos)
          << "bash completion of --set lacks " << key;
    }
  }
}

TEST(TunableTableTest, MountSettingsGoIntoTheEngineOptions) {
  EngineOptions options;
  std::string error;
  ASSERT_TRUE(ConfigureTunable("mode", "writethrough", &options, &error));
  EXPECT_EQ(options.mode, Mode::kWritethrough);
  ASSERT_TRUE(ConfigureTunable("migration_threshold", "4M", &options, &error));
  EXPECT_EQ(options.migration_threshold, 4u << 20);
  ASSERT_TRUE(
      ConfigureTunable("policy.sequential_cutoff", "0", &options, &error));
  ASSERT_TRUE(
      ConfigureTunable("policy.sequential_cutoff", "65536", &options, &error));
  EXPECT_EQ(options.policy_config,
            (policy::ConfigValues{{"sequential_cutoff", "65536"}}));
  EXPECT_TRUE(CheckPolicySettings(options, &error)) << error;

  EXPECT_FALSE(ConfigureTunable("mode", "fast", &options, &error));
  EXPECT_EQ(error,
            "unknown mode 'fast' (writeback, writethrough, passthrough)");
  EXPECT_EQ(options.mode, Mode::kWritethrough);
  EXPECT_FALSE(ConfigureTunable("nokey", "1", &options, &error));
  EXPECT_NE(error.find("unknown key 'nokey'"), std::string::npos) << error;
  EXPECT_FALSE(ConfigureTunable("migrations", "off", &options, &error));
  EXPECT_NE(error.find("only while mounted"), std::string::npos) << error;

  // The policy judges its own keys: a value out of its range, a key the
  // policy named by --policy lacks.
  ASSERT_TRUE(
      ConfigureTunable("policy.admission_window", "5000", &options, &error));
  EXPECT_FALSE(CheckPolicySettings(options, &error));
  EXPECT_NE(error.find("admission_window"), std::string::npos) << error;
  options.policy_config = {{"sequential_heat", "1"}};
  options.policy = "lru";
  EXPECT_FALSE(CheckPolicySettings(options, &error));
  EXPECT_NE(error.find("no config key 'sequential_heat'"), std::string::npos)
      << error;
}

TEST_F(TunablesTest, RunTimeSettingsChangeTheEngineOrNothing) {
  std::string error;
  ASSERT_TRUE(SetTunable(*engine_, "mode", "writethrough", &error)) << error;
  EXPECT_EQ(Get("mode"), "writethrough");
  ASSERT_TRUE(SetTunable(*engine_, "migrations", "off", &error)) << error;
  EXPECT_EQ(Get("migrations"), "off");
  ASSERT_TRUE(SetTunable(*engine_, "policy.sequential_cutoff", "0", &error));
  EXPECT_EQ(Get("policy.sequential_cutoff"), "0");

  EXPECT_FALSE(SetTunable(*engine_, "migration_threshold", "0", &error));
  EXPECT_EQ(error, "migration_threshold: not a size: '0'");
  EXPECT_FALSE(
      SetTunable(*engine_, "policy.dirty_target_percent", "101", &error));
  EXPECT_NE(error.find("policy.dirty_target_percent: rejected by the policy"),
            std::string::npos)
      << error;
  EXPECT_EQ(Get("policy.dirty_target_percent"), "50");
  EXPECT_FALSE(SetTunable(*engine_, "policy.bogus", "1", &error));
  EXPECT_EQ(error,
            "unknown key 'policy.bogus'; 'tierfs-ctl get' lists the keys");
}

}  // namespace
}  // namespace tierfs::cache
