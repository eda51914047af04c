// Runs a fuzz target's LLVMFuzzerTestOneInput over every file under the given
// directories, so the seed corpus and every crash input saved into it are
// replayed by the normal test suite, without clang or libFuzzer.
//
//   usage: <target>_regression DIR...
//
// Exits non-zero when a directory is missing or holds no inputs (a corpus that
// silently ran nothing would pass forever). An input that breaks an invariant
// aborts the process; the signal handler names it first.
#include <algorithm>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include <unistd.h>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

namespace fs = std::filesystem;

// The input being run, for the crash handler: a fixed buffer, since the
// handler may only call async-signal-safe functions.
char current_input[4096];

void report_crash(int sig) {
  const char prefix[] = "\ncorpus_runner: crashed on input: ";
  ssize_t ignored = ::write(STDERR_FILENO, prefix, sizeof(prefix) - 1);
  ignored = ::write(STDERR_FILENO, current_input, std::strlen(current_input));
  ignored = ::write(STDERR_FILENO, "\n", 1);
  (void)ignored;
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

bool read_file(const fs::path& path, std::vector<char>& out) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return false;
  out.assign(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
  return !file.bad();
}

void run_one(const fs::path& path, const std::vector<char>& bytes) {
  std::snprintf(current_input, sizeof(current_input), "%s", path.c_str());
  // An exactly sized copy, like libFuzzer gives, so a read past the end is a
  // read past the allocation when this runs under a sanitizer.
  std::unique_ptr<uint8_t[]> data(new uint8_t[bytes.size() > 0 ? bytes.size() : 1]);
  std::memcpy(data.get(), bytes.data(), bytes.size());
  LLVMFuzzerTestOneInput(data.get(), bytes.size());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR...\n", argv[0]);
    return 2;
  }
  for (int sig : {SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL}) std::signal(sig, report_crash);

  size_t total = 0;
  for (int i = 1; i < argc; ++i) {
    const fs::path dir = argv[i];
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) {
      std::fprintf(stderr, "%s: not a directory\n", argv[i]);
      return 1;
    }
    // Sorted, so runs are reproducible and output is stable.
    std::vector<fs::path> files;
    for (const auto& entry : fs::recursive_directory_iterator(dir, ec)) {
      if (entry.is_regular_file()) files.push_back(entry.path());
    }
    if (ec) {
      std::fprintf(stderr, "%s: %s\n", argv[i], ec.message().c_str());
      return 1;
    }
    if (files.empty()) {
      std::fprintf(stderr, "%s: no inputs\n", argv[i]);
      return 1;
    }
    std::sort(files.begin(), files.end());
    std::vector<char> bytes;
    for (const fs::path& path : files) {
      if (!read_file(path, bytes)) {
        std::fprintf(stderr, "%s: cannot read\n", path.c_str());
        return 1;
      }
      run_one(path, bytes);
    }
    std::printf("%s: %zu inputs ran\n", argv[i], files.size());
    total += files.size();
  }
  std::printf("%zu inputs ran, no failures\n", total);
  return 0;
}
