// outbox.toml(5) and the loader agree: every key config_keys() accepts is
// documented in its table's section with its default, and every key the man
// page names in a section's entry headings is accepted.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "daemon/config.h"

namespace {

// One paragraph of the man page: the .TP tag line and the text up to the
// next .TP or .SH, with roff escapes for quotes and dashes undone.
struct Entry {
  std::vector<std::string> tag_keys;   // bold words of the tag line
  std::vector<std::string> bold;       // bold words anywhere in it
  std::string text;
};

std::string unescape(std::string s) {
  for (auto [from, to] : {std::pair<std::string, std::string>{"\\(dq", "\""}, {"\\-", "-"}, {"\\(mu", "x"}}) {
    for (std::size_t p; (p = s.find(from)) != std::string::npos;) s.replace(p, from.size(), to);
  }
  return s;
}

// Arguments of a .B/.BR line: quoted strings or words; for .BR the even
// ones are bold.
std::vector<std::string> bold_words(const std::string& line) {
  std::vector<std::string> out;
  bool alternate = line.rfind(".BR ", 0) == 0;
  if (!alternate && line.rfind(".B ", 0) != 0) return out;
  std::vector<std::string> args;
  std::size_t i = line.find(' ');
  while (i < line.size()) {
    while (i < line.size() && line[i] == ' ') ++i;
    if (i >= line.size()) break;
    std::string a;
    if (line[i] == '"') {
      auto end = line.find('"', i + 1);
      a = line.substr(i + 1, end == std::string::npos ? std::string::npos : end - i - 1);
      i = end == std::string::npos ? line.size() : end + 1;
    } else {
      auto end = line.find(' ', i);
      a = line.substr(i, end == std::string::npos ? std::string::npos : end - i);
      i = end == std::string::npos ? line.size() : end;
    }
    args.push_back(a);
  }
  for (std::size_t k = 0; k < args.size(); ++k)
    if (!alternate || k % 2 == 0) {
      // ".BR path ," and ".B [tls]": keep identifiers only.
      std::string w = args[k];
      while (!w.empty() && (w.back() == ',' || w.back() == ';' || w.back() == '.')) w.pop_back();
      bool ident = !w.empty();
      for (char c : w) ident = ident && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_');
      if (ident) out.push_back(w);
    }
  return out;
}

// Section name ("limits", "upstream") -> its entries.
std::map<std::string, std::vector<Entry>> read_man_page() {
  std::ifstream in(std::string(OUTBOX_SOURCE_DIR) + "/man/outbox.toml.5");
  REQUIRE(in);
  std::map<std::string, std::vector<Entry>> out;
  std::string section, line;
  bool tag_next = false;
  while (std::getline(in, line)) {
    if (line.rfind(".SH ", 0) == 0) {
      section.clear();
      std::string name = line.substr(4);
      if (name.size() > 2 && name.front() == '[') {
        auto first = name.find_first_not_of('[');
        section = name.substr(first, name.find(']') - first);
        out[section];
      }
      tag_next = false;
      continue;
    }
    if (section.empty()) continue;
    if (line == ".TP") {
      out[section].emplace_back();
      tag_next = true;
      continue;
    }
    if (out[section].empty()) continue;
    Entry& e = out[section].back();
    auto words = bold_words(line);
    if (tag_next) e.tag_keys = words;
    tag_next = false;
    e.bold.insert(e.bold.end(), words.begin(), words.end());
    e.text += unescape(line) + "\n";
  }
  return out;
}

TEST_CASE("every accepted key is documented in outbox.toml(5) with its default, and every documented key is accepted") {
  auto man = read_man_page();
  REQUIRE(man.size() >= 10);
  std::map<std::string, std::set<std::string>> accepted;
  for (const auto& k : outbox::config_keys()) {
    std::string table(k.table), key(k.key);
    accepted[table].insert(key);
    CAPTURE(table);
    CAPTURE(key);
    if (table.empty()) {
      CHECK_MESSAGE(man.count(key), "no section [" << key << "] in outbox.toml(5)");
      continue;
    }
    REQUIRE_MESSAGE(man.count(table), "no section [" << table << "] in outbox.toml(5)");
    const Entry* found = nullptr;
    for (const auto& e : man[table])
      for (const auto& w : e.bold)
        if (w == key && !found) found = &e;
    CHECK_MESSAGE(found, key << " is not documented in [" << table << "] of outbox.toml(5)");
    if (found && !k.doc_default.empty())
      CHECK_MESSAGE(found->text.find(std::string(k.doc_default)) != std::string::npos,
                    "outbox.toml(5) [" << table << "] " << key << ": default \"" << k.doc_default
                                       << "\" not stated in: " << found->text);
  }
  for (const auto& [section, entries] : man) {
    CAPTURE(section);
    CHECK_MESSAGE(accepted[""].count(section), "outbox.toml(5) documents a section [" << section << "] the loader refuses");
    for (const auto& e : entries)
      for (const auto& w : e.tag_keys)
        CHECK_MESSAGE(accepted[section].count(w),
                      "outbox.toml(5) documents " << section << "." << w << ", which the loader refuses");
  }
}


// docs/config-key-effects.md: key | FILE::TEST | effect. FILE is a Python file
// under tests/integration/ (TEST a def) or a doctest file under tests/unit/
// (TEST the start of a TEST_CASE name).
std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

bool names_word(const std::string& text, const std::string& word) {
  auto ident = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'; };
  for (std::size_t p = text.find(word); p != std::string::npos; p = text.find(word, p + 1)) {
    // A \n escape just before the key inside a Python string is not part of the word.
    bool escaped_newline = p >= 2 && text[p - 2] == '\\' && text[p - 1] == 'n';
    bool before = p == 0 || !ident(text[p - 1]) || escaped_newline;
    bool after = p + word.size() >= text.size() || !ident(text[p + word.size()]);
    if (before && after) return true;
  }
  return false;
}

std::string trim(std::string s) {
  while (!s.empty() && s.front() == ' ') s.erase(s.begin());
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return s;
}

TEST_CASE("every key has a test that shows its effect (docs/config-key-effects.md)") {
  const std::filesystem::path root(OUTBOX_SOURCE_DIR);
  std::ifstream in(root / "docs/config-key-effects.md");
  REQUIRE(in);
  std::set<std::string> accepted, covered;
  for (const auto& k : outbox::config_keys())
    if (!k.table.empty()) accepted.insert(std::string(k.table) + "." + std::string(k.key));
  std::string helpers;
  for (const char* h : {"harness.py", "upstream.py", "oauth2_server.py"})
    helpers += slurp(root / "tests/integration" / h);
  std::map<std::string, std::filesystem::path> unit_files;
  for (const auto& e : std::filesystem::recursive_directory_iterator(root / "tests/unit"))
    if (e.path().extension() == ".cpp") unit_files[e.path().filename().string()] = e.path();

  std::string line;
  int rows = 0;
  while (std::getline(in, line)) {
    if (line.rfind("| ", 0) != 0 || line.rfind("| key ", 0) == 0) continue;
    std::vector<std::string> cells;
    for (std::size_t p = 1, q; (q = line.find('|', p)) != std::string::npos; p = q + 1) cells.push_back(trim(line.substr(p, q - p)));
    REQUIRE_MESSAGE(cells.size() == 3, line);
    const std::string& key = cells[0];
    const std::string& test = cells[1];
    CAPTURE(key);
    CAPTURE(test);
    ++rows;
    CHECK_MESSAGE(accepted.count(key), key << " is in the table but the loader does not accept it");
    covered.insert(key);
    auto sep = test.find("::");
    REQUIRE_MESSAGE(sep != std::string::npos, "not FILE::TEST: " << test);
    std::string file = test.substr(0, sep), name = test.substr(sep + 2);
    bool python = file.size() > 3 && file.compare(file.size() - 3, 3, ".py") == 0;
    std::filesystem::path path = python ? root / "tests/integration" / file : unit_files[file];
    REQUIRE_MESSAGE(!path.empty(), "no unit test file " << file);
    std::string text = slurp(path);
    REQUIRE_MESSAGE(!text.empty(), "no test file " << path);
    if (python)
      CHECK_MESSAGE(text.find("def " + name + "(") != std::string::npos, "no def " << name << " in " << file);
    else
      CHECK_MESSAGE(text.find("TEST_CASE(\"" + name) != std::string::npos, "no TEST_CASE(\"" << name << " in " << file);
    std::string word = key.substr(key.find('.') + 1);
    CHECK_MESSAGE((names_word(text, word) || (python && names_word(helpers, word))),
                  file << " never names " << word);
  }
  CHECK(rows >= static_cast<int>(accepted.size()));
  for (const auto& k : accepted) CHECK_MESSAGE(covered.count(k), k << " has no row: which test shows its effect?");
}

}  // namespace
