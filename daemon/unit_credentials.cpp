#include "daemon/unit_credentials.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

namespace outbox::unit_credentials {

namespace fs = std::filesystem;

namespace {

std::string trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return std::string(s);
}

std::optional<std::string> slurp(const fs::path& p) {
  std::ifstream f(p);
  if (!f) return std::nullopt;
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace

std::vector<std::pair<std::string, std::string>> parse(const std::vector<std::string>& texts) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& text : texts) {
    std::istringstream in(text);
    std::string line, section;
    while (std::getline(in, line)) {
      std::string t = trim(line);
      if (t.empty() || t[0] == '#' || t[0] == ';') continue;
      if (t.front() == '[' && t.back() == ']') {
        section = t.substr(1, t.size() - 2);
        continue;
      }
      if (section != "Service") continue;
      auto eq = t.find('=');
      if (eq == std::string::npos || trim(t.substr(0, eq)) != "LoadCredential") continue;
      std::string v = trim(t.substr(eq + 1));
      if (v.empty()) {   // systemd.exec(5): an empty assignment resets the list
        out.clear();
        continue;
      }
      auto colon = v.find(':');
      std::string id = v.substr(0, colon), path = colon == std::string::npos ? "" : v.substr(colon + 1);
      auto it = std::find_if(out.begin(), out.end(), [&](const auto& e) { return e.first == id; });
      if (it != out.end()) it->second = path; else out.emplace_back(id, path);
    }
  }
  return out;
}

std::vector<std::string> unit_path() {
  if (const char* p = std::getenv("SYSTEMD_UNIT_PATH"); p && *p) {
    std::vector<std::string> out;
    std::string s = p;
    for (std::size_t a = 0; a <= s.size();) {
      auto b = s.find(':', a);
      if (b == std::string::npos) b = s.size();
      if (b > a) out.push_back(s.substr(a, b - a));
      a = b + 1;
    }
    return out;
  }
  return {"/etc/systemd/system", "/run/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system"};
}

std::optional<std::string> source_for(std::string_view unit, std::string_view id, const std::vector<std::string>& path) {
  std::vector<std::string> texts;
  // The unit file: the first in the load path wins (/etc overrides /lib).
  bool found = false;
  for (const auto& dir : path)
    if (auto t = slurp(fs::path(dir) / std::string(unit))) {
      texts.push_back(*t);
      found = true;
      break;
    }
  if (!found) return std::nullopt;
  // Drop-ins: every NAME.conf of UNIT.d/ in the load path, a name in an
  // earlier directory masking the same name later, applied in name order.
  std::map<std::string, fs::path> dropins;
  for (const auto& dir : path) {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(fs::path(dir) / (std::string(unit) + ".d"), ec)) {
      if (e.path().extension() != ".conf") continue;
      dropins.emplace(e.path().filename().string(), e.path());
    }
  }
  for (const auto& [name, p] : dropins)
    if (auto t = slurp(p)) texts.push_back(*t);
  for (const auto& [cid, src] : parse(texts)) {
    if (cid != id) continue;
    if (!src.empty() && src.front() == '/') return src;
    // systemd.exec(5): a relative path, or none, is searched in the credential store.
    for (const char* store : {"/etc/credstore", "/run/credstore", "/usr/lib/credstore"}) {
      fs::path cand = fs::path(store) / (src.empty() ? std::string(id) : src);
      if (fs::exists(cand)) return cand.string();
    }
    return std::nullopt;
  }
  return std::nullopt;
}

}  // namespace outbox::unit_credentials
