// The container image and the Kubernetes manifests (packaging/container/Containerfile,
// packaging/kubernetes/; docs/operations.md, "Kubernetes") against what hubd really needs:
//   - the Containerfile installs the hub .deb and runs hubd as hubd.service does (binary,
//     config path), exposes hubd's port, and runs as the user the Deployment names;
//   - the overlay rendered by `kubectl kustomize`: container port = the listen port of the
//     ConfigMap's hubd.toml; the ConfigMap mounted where the image reads its config; every file
//     the config names mounted from a Secret; hubd accepts every key of it; probes, Service and
//     PodDisruptionBudget aimed at the pods and the port; and a real hubd started with that very
//     file (only the port, the files' places and the database address changed, PostgreSQL from
//     tests/support/postgres.h) answers the probes' paths with 200.
// The image itself is not built here (no registry access); docs/operations.md says so.
#include <httplib.h>

#include <filesystem>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/config.h"
#include "tests/support/harness.h"
#include "tests/support/postgres.h"

namespace freshsync::testing {
namespace {

using json = nlohmann::json;

const std::string kSource = FRESHSYNC_SOURCE_DIR;

// Reads YAML documents (a file) into a JSON array with Debian's python3-yaml.
json YamlDocuments(const TempDir& dir, const std::string& yaml_file) {
  const std::string out = dir.File("docs.json");
  const std::string log = dir.File("yaml.log");
  const int rc = RunShell("/usr/bin/python3 -c 'import sys, yaml, json; "
                          "json.dump([d for d in yaml.safe_load_all(open(sys.argv[1])) if d], open(sys.argv[2], \"w\"))' " +
                              yaml_file + " " + out,
                          log);
  EXPECT_EQ(rc, 0) << ReadFile(log);
  return rc == 0 ? json::parse(ReadFile(out)) : json::array();
}

// The Containerfile's instructions, continuation lines joined, comments dropped.
std::vector<std::pair<std::string, std::string>> Instructions(const std::string& text) {
  std::vector<std::pair<std::string, std::string>> out;
  std::istringstream in(text);
  std::string line, joined;
  while (std::getline(in, line)) {
    const auto first = line.find_first_not_of(" \t");
    if (first == std::string::npos || line[first] == '#') continue;
    joined += line.substr(first);
    if (!joined.empty() && joined.back() == '\\') {
      joined.pop_back();
      joined += ' ';
      continue;
    }
    const auto sp = joined.find(' ');
    out.emplace_back(joined.substr(0, sp), sp == std::string::npos ? "" : joined.substr(sp + 1));
    joined.clear();
  }
  return out;
}

std::string Instruction(const std::vector<std::pair<std::string, std::string>>& all, const std::string& name) {
  std::string last;
  for (const auto& [k, v] : all)
    if (k == name) last = v;
  return last;
}

// hubd.service's command line: what the package runs.
std::string UnitExecStart() {
  std::istringstream in(ReadFile(kSource + "/systemd/hubd.service"));
  for (std::string line; std::getline(in, line);)
    if (line.rfind("ExecStart=", 0) == 0) return line.substr(10);
  return "";
}

int ListenPort(const std::string& toml) {
  auto c = ParseHubConfig(toml);
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  if (!c.ok()) return -1;
  auto hp = ParseHostPort(c->listen, "listen");
  return hp.ok() ? hp->second : -1;
}

const json* Find(const json& docs, const std::string& kind, const std::string& name_prefix) {
  for (const json& d : docs)
    if (d.value("kind", "") == kind && d["metadata"].value("name", "").rfind(name_prefix, 0) == 0) return &d;
  return nullptr;
}

// `labels` holds every pair of `selector`.
bool Selects(const json& selector, const json& labels) {
  if (!selector.is_object() || selector.empty()) return false;
  for (const auto& [k, v] : selector.items())
    if (!labels.contains(k) || labels[k] != v) return false;
  return true;
}

TEST(ContainerfileTest, InstallsTheHubPackageAndRunsHubdAsTheUnitDoes) {
  const auto ins = Instructions(ReadFile(kSource + "/packaging/container/Containerfile"));
  EXPECT_EQ(Instruction(ins, "FROM"), "debian:bookworm-slim");
  // The project's .deb, installed by apt (which brings its Depends).
  EXPECT_NE(Instruction(ins, "COPY").find("freshsync-hub.deb"), std::string::npos);
  bool installs = false;
  for (const auto& [k, v] : ins)
    if (k == "RUN" && std::regex_search(v, std::regex(R"(apt-get install .*/tmp/freshsync-hub\.deb)"))) installs = true;
  EXPECT_TRUE(installs) << "no RUN apt-get install of the copied freshsync-hub.deb";
  // ENTRYPOINT + CMD is hubd.service's ExecStart: the package's binary and config path.
  const json entry = json::parse(Instruction(ins, "ENTRYPOINT"), nullptr, false);
  const json cmd = json::parse(Instruction(ins, "CMD"), nullptr, false);
  ASSERT_TRUE(entry.is_array() && cmd.is_array()) << "ENTRYPOINT and CMD in exec (JSON) form";
  std::string command;
  for (const json& part : entry) command += (command.empty() ? "" : " ") + part.get<std::string>();
  for (const json& part : cmd) command += " " + part.get<std::string>();
  EXPECT_EQ(command, UnitExecStart());
  // Exposes the port the shipped configs listen on.
  const int port = ListenPort(ReadFile(kSource + "/packaging/hubd.toml"));
  EXPECT_EQ(Instruction(ins, "EXPOSE"), std::to_string(port));
  EXPECT_EQ(ListenPort(ReadFile(kSource + "/packaging/kubernetes/base/hubd.toml")), port);
  // A numeric non-root user, the one the Deployment runs as (runAsNonRoot needs a number).
  const std::string user = Instruction(ins, "USER");
  std::smatch m;
  ASSERT_TRUE(std::regex_match(user, m, std::regex(R"(([1-9][0-9]*):([1-9][0-9]*))"))) << user;
  TempDir dir;
  const json docs = YamlDocuments(dir, kSource + "/packaging/kubernetes/base/deployment.yaml");
  const json* dep = Find(docs, "Deployment", "freshsync-hub");
  ASSERT_NE(dep, nullptr);
  const json& sc = (*dep)["spec"]["template"]["spec"]["securityContext"];
  EXPECT_EQ(sc.value("runAsUser", 0), std::stoi(m[1]));
  EXPECT_EQ(sc.value("runAsGroup", 0), std::stoi(m[2]));
  EXPECT_TRUE(sc.value("runAsNonRoot", false));
  // The user is made with that id before the package's postinst, which keeps it.
  EXPECT_NE(Instruction(ins, "RUN").size(), 0u);
  bool made = false;
  for (const auto& [k, v] : ins)
    if (k == "RUN" && v.find("useradd") != std::string::npos && v.find("--uid " + std::string(m[1])) != std::string::npos &&
        v.find(" freshsync") != std::string::npos)
      made = true;
  EXPECT_TRUE(made) << "useradd --uid " << m[1] << " freshsync";
}

class KubernetesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (RunShell("command -v kubectl >/dev/null") != 0)
      GTEST_SKIP() << "kubectl not installed (kustomize v4+ needed; scripts/install-deps.sh)";
    const std::string out = dir_.File("rendered.yaml");
    const std::string log = dir_.File("kustomize.log");
    // In braces: RunShell sends the command's output to `log`, the rendering goes to `out`.
    ASSERT_EQ(RunShell("{ kubectl kustomize " + kSource + "/packaging/kubernetes/overlays/example > " + out + "; }", log), 0)
        << ReadFile(log);
    docs_ = YamlDocuments(dir_, out);
    const json* dep = Find(docs_, "Deployment", "freshsync-hub");
    const json* cm = Find(docs_, "ConfigMap", "freshsync-hub-config");
    ASSERT_NE(dep, nullptr);
    ASSERT_NE(cm, nullptr);
    deployment_ = *dep;
    configmap_ = *cm;
    pod_ = deployment_["spec"]["template"];
    ASSERT_EQ(pod_["spec"]["containers"].size(), 1u);
    container_ = pod_["spec"]["containers"][0];
    toml_ = configmap_["data"].value("hubd.toml", "");
    ASSERT_FALSE(toml_.empty()) << "the ConfigMap has no hubd.toml";
    auto c = ParseHubConfig(toml_, "hubd.toml");  // refuses unknown keys, as hubd does
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    config_ = *c;
  }

  // The container port a probe or Service names (by name or number).
  int PortOf(const json& port) const {
    if (port.is_number()) return port.get<int>();
    for (const json& p : container_["ports"])
      if (p.value("name", "") == port.get<std::string>()) return p["containerPort"].get<int>();
    return -1;
  }

  // The volume mounted at `file` (itself, by subPath, or its folder); null when none.
  const json* MountOf(const std::string& file, std::string* key) const {
    const std::string folder = std::filesystem::path(file).parent_path().string();
    const std::string name = std::filesystem::path(file).filename().string();
    for (const json& m : container_["volumeMounts"]) {
      const std::string at = m["mountPath"];
      std::string k;
      if (at == file && m.contains("subPath")) k = m["subPath"];
      else if (at == folder && !m.contains("subPath")) k = name;
      else continue;
      for (const json& v : pod_["spec"]["volumes"])
        if (v["name"] == m["name"]) {
          *key = k;
          return &v;
        }
    }
    return nullptr;
  }

  TempDir dir_;
  json docs_, deployment_, configmap_, pod_, container_;
  std::string toml_;
  HubConfig config_;
};

TEST_F(KubernetesTest, PortsProbesServiceAndBudgetAimAtHubd) {
  const int listen = ParseHostPort(config_.listen, "listen")->second;
  ASSERT_EQ(container_["ports"].size(), 1u) << "hubd listens on one port";
  EXPECT_EQ(container_["ports"][0]["containerPort"], listen);
  EXPECT_EQ(container_["ports"][0].value("protocol", "TCP"), "TCP");
  // N replicas, all selected by the Service and the budget.
  EXPECT_GE(deployment_["spec"].value("replicas", 1), 2);
  const json& labels = pod_["metadata"]["labels"];
  EXPECT_TRUE(Selects(deployment_["spec"]["selector"]["matchLabels"], labels));
  const json* svc = Find(docs_, "Service", "freshsync-hub");
  ASSERT_NE(svc, nullptr);
  EXPECT_TRUE(Selects((*svc)["spec"]["selector"], labels));
  ASSERT_EQ((*svc)["spec"]["ports"].size(), 1u);
  EXPECT_EQ(PortOf((*svc)["spec"]["ports"][0]["targetPort"]), listen);
  // TCP passthrough: a plain L4 Service, no Ingress ending TLS before hubd.
  EXPECT_EQ((*svc)["spec"]["ports"][0].value("protocol", "TCP"), "TCP");
  EXPECT_EQ(Find(docs_, "Ingress", ""), nullptr);
  const json* pdb = Find(docs_, "PodDisruptionBudget", "freshsync-hub");
  ASSERT_NE(pdb, nullptr);
  EXPECT_TRUE(Selects((*pdb)["spec"]["selector"]["matchLabels"], labels));
  EXPECT_TRUE((*pdb)["spec"].contains("maxUnavailable") || (*pdb)["spec"].contains("minAvailable"));
  // Probes: HTTPS on hubd's port; liveness /healthz, readiness /readyz.
  for (const char* probe : {"livenessProbe", "readinessProbe", "startupProbe"}) {
    if (!container_.contains(probe)) continue;
    const json& g = container_[probe]["httpGet"];
    EXPECT_EQ(g.value("scheme", "HTTP"), "HTTPS") << probe << ": hubd speaks only TLS";
    EXPECT_EQ(PortOf(g["port"]), listen) << probe;
  }
  EXPECT_EQ(container_["livenessProbe"]["httpGet"]["path"], "/healthz");
  EXPECT_EQ(container_["readinessProbe"]["httpGet"]["path"], "/readyz");
  // Resources and a locked-down container.
  EXPECT_TRUE(container_["resources"]["requests"].contains("cpu"));
  EXPECT_TRUE(container_["resources"]["requests"].contains("memory"));
  EXPECT_TRUE(container_["resources"]["limits"].contains("memory"));
  EXPECT_TRUE(pod_["spec"]["securityContext"].value("runAsNonRoot", false));
  EXPECT_FALSE(container_["securityContext"].value("allowPrivilegeEscalation", true));
}

TEST_F(KubernetesTest, ConfigAndEveryFileItNamesAreMounted) {
  // The container runs the image's ENTRYPOINT/CMD (the Containerfile test holds them to
  // hubd.service): its --config is where the ConfigMap must be.
  EXPECT_FALSE(container_.contains("command")) << "the image's ENTRYPOINT runs hubd";
  EXPECT_FALSE(container_.contains("args")) << "the image's CMD names the config";
  const std::string exec = UnitExecStart();
  const std::string config_path = exec.substr(exec.find("--config ") + 9);
  std::string key;
  const json* cfg = MountOf(config_path, &key);
  ASSERT_NE(cfg, nullptr) << "nothing mounted at " << config_path;
  ASSERT_TRUE(cfg->contains("configMap"));
  EXPECT_EQ((*cfg)["configMap"]["name"], configmap_["metadata"]["name"]);
  EXPECT_EQ(key, "hubd.toml");
  // Every file the config names, from a Secret (or ConfigMap) that has it.
  std::vector<std::pair<std::string, std::string>> files = {
      {"tls.ca", config_.tls_ca}, {"tls.cert", config_.tls_cert}, {"tls.key", config_.tls_key}};
  if (!config_.privacy_key_file.empty()) files.push_back({"privacy.key_file", config_.privacy_key_file});
  if (!config_.customer_stream_key_file.empty()) files.push_back({"customer_stream.key_file", config_.customer_stream_key_file});
  if (!config_.audit_log.empty()) files.push_back({"audit_log", config_.audit_log});
  for (const auto& [what, path] : files) {
    const json* v = MountOf(path, &key);
    ASSERT_NE(v, nullptr) << what << " = " << path << " is not mounted";
    const json& src = v->contains("secret") ? (*v)["secret"] : (*v)["configMap"];
    ASSERT_TRUE(src.is_object()) << what << ": mounted from neither a Secret nor a ConfigMap";
    if (src.contains("items")) {
      bool listed = false;
      for (const json& item : src["items"]) listed = listed || item["path"] == key;
      EXPECT_TRUE(listed) << what << ": " << key << " is not among the volume's items";
    }
  }
  // The database password from a Secret, for libpq, never in the ConfigMap.
  if (config_.store_backend == "postgresql") {
    bool from_secret = false;
    for (const json& e : container_["env"])
      if (e["name"] == "PGPASSWORD" && e.contains("valueFrom") && e["valueFrom"].contains("secretKeyRef")) from_secret = true;
    EXPECT_TRUE(from_secret);
    EXPECT_EQ(config_.store_url.find("password"), std::string::npos);
  }
}

// A real hubd on the ConfigMap's very file, adjusted only for a free port, the places of its
// files and the database address, answers the probes' paths.
TEST_F(KubernetesTest, HubdStartedOnTheConfigMapAnswersTheProbes) {
  ASSERT_EQ(config_.store_backend, "postgresql") << "the manifests are for replicas on PostgreSQL";
  PostgresServer pg(dir_.File("pg"));
  ASSERT_TRUE(pg.Start()) << ReadFile(pg.log_path());
  ASSERT_TRUE(pg.CreateDatabase("freshsync"));
  TestPki pki(dir_.File("pki"));
  ASSERT_TRUE(pki.Init());
  const int port = PickFreePort();
  std::string toml = toml_;
  auto replace = [&](const std::string& from, const std::string& to) {
    const auto at = toml.find("\"" + from + "\"");
    ASSERT_NE(at, std::string::npos) << from;
    toml.replace(at, from.size() + 2, "\"" + to + "\"");
  };
  replace(config_.listen, "127.0.0.1:" + std::to_string(port));
  replace(config_.tls_ca, pki.ca_cert());
  replace(config_.tls_cert, pki.server().cert);
  replace(config_.tls_key, pki.server().key);
  replace(config_.store_url, pg.Url("freshsync"));
  if (!config_.privacy_key_file.empty()) {
    WriteFile(dir_.File("privacy.key"), std::string(64, 'a') + "\n");
    replace(config_.privacy_key_file, dir_.File("privacy.key"));
  }
  if (!config_.customer_stream_key_file.empty()) {
    WriteFile(dir_.File("customer-stream.key"), std::string(64, 'c') + "\n");
    replace(config_.customer_stream_key_file, dir_.File("customer-stream.key"));
  }
  WriteFile(dir_.File("hubd.toml"), toml);
  ChildProcess hubd({BinDir() + "/hubd", "--config", dir_.File("hubd.toml")}, dir_.File("hubd.log"));
  ASSERT_TRUE(hubd.Start());
  // As the kubelet probes: HTTPS, no client certificate, the certificate not verified.
  auto get = [&](const std::string& path) {
    httplib::SSLClient c("127.0.0.1", port);
    c.enable_server_certificate_verification(false);
    c.set_connection_timeout(2);
    auto r = c.Get(path.c_str());
    return r ? r->status : 0;
  };
  const std::string startup = container_["startupProbe"]["httpGet"]["path"];
  EXPECT_TRUE(WaitFor([&] { return get(startup) == 200; }, std::chrono::seconds(30))) << ReadFile(dir_.File("hubd.log"));
  for (const char* probe : {"livenessProbe", "readinessProbe", "startupProbe"}) {
    const std::string path = container_[probe]["httpGet"]["path"];
    EXPECT_EQ(get(path), 200) << probe << " " << path << "\n" << ReadFile(dir_.File("hubd.log"));
  }
  // /readyz follows the store: with PostgreSQL gone the replica leaves the Service.
  pg.Stop();
  EXPECT_TRUE(WaitFor([&] { return get(container_["readinessProbe"]["httpGet"]["path"]) == 503; }, std::chrono::seconds(20)))
      << ReadFile(dir_.File("hubd.log"));
  EXPECT_EQ(get(container_["livenessProbe"]["httpGet"]["path"]), 200) << "liveness stays up: no restart for a database outage";
  hubd.Kill();
}

}  // namespace
}  // namespace freshsync::testing
