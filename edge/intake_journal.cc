#include "edge/intake_journal.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>

#include <spdlog/spdlog.h>

namespace freshsync::edge {

namespace {

// Version 1 segments (no flags byte) are still read, so a journal left by an older edged
// recovers; every segment written now is version 2.
constexpr char kMagicV1[8] = {'F', 'S', 'J', 'R', 'N', 'L', '0', '1'};
constexpr char kMagic[8] = {'F', 'S', 'J', 'R', 'N', 'L', '0', '2'};
constexpr size_t kHeader = 16;  // body_len:u32 crc:u32 index:u64
constexpr size_t kBodyFixedV1 = 10;  // received_ms:i64 topic_len:u16
constexpr size_t kBodyFixed = 11;    // received_ms:i64 flags:u8 topic_len:u16
// A body larger than this is not something Append wrote (MQTT payloads here are capped far below).
constexpr uint32_t kMaxBody = 64u << 20;
constexpr char kPrefix[] = "intake-";
constexpr char kSuffix[] = ".log";

std::array<uint32_t, 256> MakeCrcTable() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    t[i] = c;
  }
  return t;
}

uint32_t Crc32cSoftware(const unsigned char* p, size_t n, uint32_t crc) {
  static const std::array<uint32_t, 256> table = MakeCrcTable();
  for (size_t i = 0; i < n; ++i) crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) uint32_t Crc32cHardware(const unsigned char* p, size_t n, uint32_t crc) {
  uint64_t c = crc;
  while (n >= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    c = __builtin_ia32_crc32di(c, v);
    p += 8;
    n -= 8;
  }
  auto c32 = static_cast<uint32_t>(c);
  while (n-- > 0) c32 = __builtin_ia32_crc32qi(c32, *p++);
  return c32;
}
#endif

// Explicit little-endian encoding, whatever the host's byte order (the format says
// little-endian; on a little-endian host these are the bytes a memcpy would give, so files
// written before these helpers read back identically).
void PutLE(std::string& b, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) b.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void PutU16(std::string& b, uint16_t v) { PutLE(b, v, 2); }
void PutU32(std::string& b, uint32_t v) { PutLE(b, v, 4); }
void PutU64(std::string& b, uint64_t v) { PutLE(b, v, 8); }
uint64_t GetLE(const char* p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}
uint16_t GetU16(const char* p) { return static_cast<uint16_t>(GetLE(p, 2)); }
uint32_t GetU32(const char* p) { return static_cast<uint32_t>(GetLE(p, 4)); }
uint64_t GetU64(const char* p) { return GetLE(p, 8); }

Status Errno(const std::string& what) { return Status::IOError("intake journal: " + what + ": " + std::strerror(errno)); }

std::string SegmentName(uint64_t first_index) {
  char name[64];
  std::snprintf(name, sizeof(name), "%s%020llu%s", kPrefix, static_cast<unsigned long long>(first_index), kSuffix);
  return name;
}

// Segment files in `dir`, oldest first. Other files are left alone.
Result<std::vector<std::pair<uint64_t, std::string>>> ListSegments(const std::string& dir) {
  std::vector<std::pair<uint64_t, std::string>> out;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return Errno("cannot list " + dir);
  while (dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name.size() != sizeof(kPrefix) - 1 + 20 + sizeof(kSuffix) - 1 || name.rfind(kPrefix, 0) != 0 ||
        name.compare(name.size() - 4, 4, kSuffix) != 0)
      continue;
    const std::string digits = name.substr(sizeof(kPrefix) - 1, 20);
    if (!std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) continue;
    out.emplace_back(std::stoull(digits), dir + "/" + name);
  }
  closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

Result<std::string> ReadWholeFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Errno("cannot open " + path);
  std::string data;
  char chunk[1 << 16];
  while (true) {
    const ssize_t n = ::read(fd, chunk, sizeof(chunk));
    if (n < 0) {
      if (errno == EINTR) continue;
      Status s = Errno("cannot read " + path);
      ::close(fd);
      return s;
    }
    if (n == 0) break;
    data.append(chunk, static_cast<size_t>(n));
  }
  ::close(fd);
  return data;
}

// Parses the entries of one segment's bytes. Calls `on_entry` for each valid one and returns the
// length of the valid prefix; parsing stops at the first entry that is short, fails its
// checksum or breaks the index order (a torn or corrupt tail).
template <typename OnEntry>
size_t ParseSegment(const std::string& data, OnEntry on_entry, uint64_t* last_index) {
  if (data.size() < sizeof(kMagic)) return 0;
  const bool v1 = std::memcmp(data.data(), kMagicV1, sizeof(kMagicV1)) == 0;
  if (!v1 && std::memcmp(data.data(), kMagic, sizeof(kMagic)) != 0) return 0;
  const size_t fixed = v1 ? kBodyFixedV1 : kBodyFixed;
  size_t pos = sizeof(kMagic);
  while (data.size() - pos >= kHeader) {
    const char* h = data.data() + pos;
    const uint32_t body_len = GetU32(h);
    const uint32_t crc = GetU32(h + 4);
    const uint64_t index = GetU64(h + 8);
    if (body_len < fixed || body_len > kMaxBody || data.size() - pos - kHeader < body_len) break;
    if (Crc32c(h + 8, 8 + body_len) != crc) break;
    if (*last_index != 0 && index <= *last_index) break;
    const char* b = h + kHeader;
    const auto received_ms = static_cast<int64_t>(GetU64(b));
    const uint8_t flags = v1 ? 0 : static_cast<uint8_t>(b[8]);
    const uint16_t topic_len = GetU16(b + fixed - 2);
    if (fixed + topic_len > body_len) break;
    on_entry(index, received_ms, flags, std::string_view(b + fixed, topic_len),
             std::string_view(b + fixed + topic_len, body_len - fixed - topic_len), kHeader + body_len);
    *last_index = index;
    pos += kHeader + body_len;
  }
  return pos;
}

class PosixFiles final : public JournalFiles {
 public:
  int Open(const std::string& path, int flags, mode_t mode) override { return ::open(path.c_str(), flags, mode); }
  ssize_t Write(int fd, const void* data, size_t n) override { return ::write(fd, data, n); }
  int DataSync(int fd) override { return ::fdatasync(fd); }
  int Truncate(int fd, off_t size) override { return ::ftruncate(fd, size); }
  int TruncatePath(const std::string& path, off_t size) override { return ::truncate(path.c_str(), size); }
  int Close(int fd) override { return ::close(fd); }
  int Unlink(const std::string& path) override { return ::unlink(path.c_str()); }
  int SyncDir(const std::string& dir) override {
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    const int rc = ::fsync(fd);
    const int saved = errno;
    ::close(fd);
    errno = saved;
    return rc;
  }
};

}  // namespace

JournalFiles& PosixJournalFiles() {
  static PosixFiles files;
  return files;
}

uint32_t Crc32c(const void* data, size_t n, uint32_t crc) {
  const auto* p = static_cast<const unsigned char*>(data);
  crc = ~crc;
#if defined(__x86_64__)
  static const bool hw = __builtin_cpu_supports("sse4.2");
  crc = hw ? Crc32cHardware(p, n, crc) : Crc32cSoftware(p, n, crc);
#else
  crc = Crc32cSoftware(p, n, crc);
#endif
  return ~crc;
}

IntakeJournal::IntakeJournal(IntakeJournalOptions options)
    : options_(std::move(options)), files_(options_.files ? *options_.files : PosixJournalFiles()) {}

IntakeJournal::~IntakeJournal() {
  if (fd_ >= 0) files_.Close(fd_);
}

Result<std::unique_ptr<IntakeJournal>> IntakeJournal::Open(IntakeJournalOptions options, uint64_t applied_index) {
  if (::mkdir(options.dir.c_str(), 0700) != 0 && errno != EEXIST) return Errno("cannot create " + options.dir);
  std::unique_ptr<IntakeJournal> j(new IntakeJournal(std::move(options)));
  if (Status s = j->Recover(applied_index); !s.ok()) return s;
  return j;
}

Status IntakeJournal::Recover(uint64_t applied_index) {
  auto listed = ListSegments(options_.dir);
  if (!listed.ok()) return listed.status();
  uint64_t last = 0;
  for (size_t i = 0; i < listed->size(); ++i) {
    const auto& [first, path] = (*listed)[i];
    auto data = ReadWholeFile(path);
    if (!data.ok()) return data.status();
    size_t entries = 0;
    const size_t valid = ParseSegment(
        *data,
        [&](uint64_t index, int64_t received_ms, uint8_t flags, std::string_view topic, std::string_view payload, size_t bytes) {
          ++entries;
          if (index <= applied_index) return;
          queued_.push_back({index, received_ms, std::string(topic), std::string(payload), flags});
          sizes_.emplace_back(index, bytes);
          unapplied_bytes_ += bytes;
        },
        &last);
    const bool is_last = i + 1 == listed->size();
    if (valid < data->size()) {
      if (is_last) {
        // A crash in the middle of an append: that entry's callback never returned, so the
        // broker never got its PUBACK and will redeliver it. Cut it off.
        ++torn_dropped_;
        spdlog::warn("intake journal: dropping a torn tail of {} bytes in {} (never acknowledged)", data->size() - valid, path);
      } else {
        // Only a failed append (which starts a new segment) or a damaged disk leaves this.
        spdlog::error("intake journal: {} has {} unreadable bytes after its {} valid entries; skipping them", path,
                      data->size() - valid, entries);
      }
    }
    if (entries == 0) {
      // Holds nothing that was ever acknowledged (at most a torn first entry).
      if (files_.Unlink(path) != 0) return Errno("cannot delete " + path);
      continue;
    }
    if (is_last && valid < data->size() && files_.TruncatePath(path, static_cast<off_t>(valid)) != 0)
      return Errno("cannot truncate " + path);
    segments_.push_back({first, path});
  }
  last_index_ = std::max(last, applied_index);
  applied_index_ = applied_index;
  DeleteReleasedSegments();
  // Appends always go to a fresh segment: a recovered file is never written again.
  return OpenNewSegment(last_index_ + 1);
}

Status IntakeJournal::OpenNewSegment(uint64_t first_index) {
  if (fd_ >= 0) {
    files_.Close(fd_);
    fd_ = -1;
  }
  const std::string path = options_.dir + "/" + SegmentName(first_index);
  // O_TRUNC: a file of this name can only be a previous attempt that holds no valid entry.
  const int fd = files_.Open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return Errno("cannot create " + path);
  if (files_.Write(fd, kMagic, sizeof(kMagic)) != static_cast<ssize_t>(sizeof(kMagic))) {
    Status s = Errno("cannot write " + path);
    files_.Close(fd);
    files_.Unlink(path);
    return s;
  }
  if (options_.sync_each_append) {
    // The new file's directory entry must be durable before any entry in it is acknowledged.
    if (files_.DataSync(fd) != 0 || files_.SyncDir(options_.dir) != 0) {
      Status s = Errno("cannot sync " + path);
      files_.Close(fd);
      files_.Unlink(path);
      return s;
    }
  }
  fd_ = fd;
  segment_size_ = sizeof(kMagic);
  std::lock_guard<std::mutex> lock(mu_);
  if (!segments_.empty() && segments_.back().first_index == first_index) segments_.back().path = path;
  else segments_.push_back({first_index, path});
  return Status::Ok();
}

Result<uint64_t> IntakeJournal::Append(std::string_view topic, std::string_view payload, int64_t received_ms, uint8_t flags) {
  if (topic.size() > kMaxTopic) return Status::InvalidArgument("intake journal: topic too long");
  if (fd_ < 0 || segment_size_ >= options_.segment_bytes) {
    // Rotation, or the first append after a failed one.
    if (Status s = OpenNewSegment(last_index_ + 1); !s.ok()) return s;
  }
  const uint64_t index = last_index_ + 1;
  const auto body_len = static_cast<uint32_t>(kBodyFixed + topic.size() + payload.size());
  buf_.clear();
  PutU32(buf_, body_len);
  PutU32(buf_, 0);  // crc, below
  PutU64(buf_, index);
  PutU64(buf_, static_cast<uint64_t>(received_ms));
  buf_.push_back(static_cast<char>(flags));
  PutU16(buf_, static_cast<uint16_t>(topic.size()));
  buf_.append(topic);
  buf_.append(payload);
  std::string crc_le;
  PutU32(crc_le, Crc32c(buf_.data() + 8, buf_.size() - 8));
  buf_.replace(4, 4, crc_le);

  Status failed;
  if (append_fault_) failed = append_fault_();
  if (failed.ok()) {
    size_t done = 0;
    while (done < buf_.size()) {
      const ssize_t n = files_.Write(fd_, buf_.data() + done, buf_.size() - done);
      if (n < 0) {
        if (errno == EINTR) continue;
        failed = Errno("cannot append");
        break;
      }
      done += static_cast<size_t>(n);
    }
    if (failed.ok() && options_.sync_each_append && files_.DataSync(fd_) != 0) failed = Errno("cannot sync");
    if (!failed.ok()) {
      // Whatever reached the file is not acknowledged. The index is spent (a copy may survive
      // and be replayed, which dedupe absorbs), and the next append starts a fresh segment so
      // that nothing acknowledged ever follows this possibly torn entry in the same file.
      {
        std::lock_guard<std::mutex> lock(mu_);  // observers read it from other threads
        last_index_ = index;
      }
      (void)files_.Truncate(fd_, static_cast<off_t>(segment_size_));
      files_.Close(fd_);
      fd_ = -1;
      return failed;
    }
  } else {
    return failed;
  }
  segment_size_ += buf_.size();
  {
    std::lock_guard<std::mutex> lock(mu_);
    last_index_ = index;
    queued_.push_back({index, received_ms, std::string(topic), std::string(payload), flags});
    sizes_.emplace_back(index, buf_.size());
    unapplied_bytes_ += buf_.size();
  }
  cv_.notify_all();
  return index;
}

bool IntakeJournal::Take(size_t max_entries, int wait_ms, std::vector<JournalEntry>* out) {
  std::unique_lock<std::mutex> lock(mu_);
  if (queued_.empty() && wait_ms > 0)
    cv_.wait_for(lock, std::chrono::milliseconds(wait_ms), [&] { return !queued_.empty() || interrupted_; });
  interrupted_ = false;
  if (queued_.empty()) return false;
  const size_t n = std::min(max_entries, queued_.size());
  for (size_t i = 0; i < n; ++i) {
    out->push_back(std::move(queued_.front()));
    queued_.pop_front();
  }
  return true;
}

void IntakeJournal::Interrupt() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    interrupted_ = true;
  }
  cv_.notify_all();
}

bool IntakeJournal::WaitForRoom(uint64_t max_entries, uint64_t max_bytes, int timeout_ms) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms),
               [&] { return room_waits_cancelled_ || (sizes_.size() < max_entries && unapplied_bytes_ < max_bytes); });
  return sizes_.size() < max_entries && unapplied_bytes_ < max_bytes;
}

void IntakeJournal::CancelRoomWaits() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    room_waits_cancelled_ = true;
  }
  cv_.notify_all();
}

void IntakeJournal::Release(uint64_t index) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (index <= applied_index_) return;
    applied_index_ = index;
    while (!sizes_.empty() && sizes_.front().first <= index) {
      unapplied_bytes_ -= sizes_.front().second;
      sizes_.pop_front();
    }
    DeleteReleasedSegments();
  }
  cv_.notify_all();
}

bool IntakeJournal::RemoveIfAllApplied() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!queued_.empty() || !sizes_.empty()) return false;
  if (fd_ >= 0) {
    files_.Close(fd_);
    fd_ = -1;
  }
  while (!segments_.empty()) {
    if (files_.Unlink(segments_.back().path) != 0 && errno != ENOENT) {
      // What is left holds only applied entries: replaying them into this store is harmless
      // (Open skips them by the store's position).
      spdlog::warn("intake journal: cannot delete {}: {}", segments_.back().path, std::strerror(errno));
      return false;
    }
    segments_.pop_back();
  }
  return true;
}

void IntakeJournal::DeleteReleasedSegments() {
  // Segment i holds indexes [first_i, first_{i+1}); it can go once all of them are applied.
  // The last segment is the one being appended to and stays.
  while (segments_.size() > 1 && segments_[1].first_index <= applied_index_ + 1) {
    if (files_.Unlink(segments_.front().path) != 0 && errno != ENOENT) {
      spdlog::warn("intake journal: cannot delete {}: {}", segments_.front().path, std::strerror(errno));
      return;  // tried again at the next release
    }
    segments_.erase(segments_.begin());
  }
}

uint64_t IntakeJournal::last_index() const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_index_;
}

uint64_t IntakeJournal::applied_index() const {
  std::lock_guard<std::mutex> lock(mu_);
  return applied_index_;
}

uint64_t IntakeJournal::UnappliedEntries() const {
  std::lock_guard<std::mutex> lock(mu_);
  return sizes_.size();
}

uint64_t IntakeJournal::UnappliedBytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return unapplied_bytes_;
}

size_t IntakeJournal::segment_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return segments_.size();
}

Result<uint64_t> ReadJournalLastIndex(const std::string& dir) {
  struct stat sb;
  if (::stat(dir.c_str(), &sb) != 0) return uint64_t{0};
  auto listed = ListSegments(dir);
  if (!listed.ok()) return listed.status();
  // The newest segment with an entry in it (a fresh one may hold only the magic).
  for (auto it = listed->rbegin(); it != listed->rend(); ++it) {
    auto data = ReadWholeFile(it->second);
    if (!data.ok()) return data.status();
    uint64_t last = 0;
    ParseSegment(*data, [](uint64_t, int64_t, uint8_t, std::string_view, std::string_view, size_t) {}, &last);
    if (last != 0) return last;
  }
  return uint64_t{0};
}

}  // namespace freshsync::edge
