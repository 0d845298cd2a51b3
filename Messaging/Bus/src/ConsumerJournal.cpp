#include "Bus/ConsumerJournal.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <type_traits>

namespace messaging {

namespace {

constexpr char kMagic[8] = {'S', 'A', 'G', 'A', 'C', 'J', '0', '1'};

std::runtime_error JournalError(const std::string& path, const char* what) {
    return std::runtime_error("consumer journal " + path + ": " + what + ": " + std::strerror(errno));
}

// FNV-1a, 64 bits: stable across builds and processes, which std::hash does not promise.
std::uint64_t Fnv1a(std::uint64_t hash, std::string_view bytes) {
    for (const unsigned char c : bytes) {
        hash ^= c;
        hash *= 0x100000001b3ULL;
    }
    return hash;
}

}  // namespace

ConsumerJournal::ConsumerJournal(const std::string& path) {
    static_assert(std::is_trivially_copyable_v<Layout>);
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) throw JournalError(path, "cannot open");
    struct stat st {};
    if (::fstat(fd_, &st) != 0 ||
        (st.st_size < static_cast<off_t>(sizeof(Layout)) && ::ftruncate(fd_, sizeof(Layout)) != 0)) {
        const auto error = JournalError(path, "cannot size");
        ::close(fd_);
        throw error;
    }
    void* mapped = ::mmap(nullptr, sizeof(Layout), PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
    if (mapped == MAP_FAILED) {
        const auto error = JournalError(path, "cannot map");
        ::close(fd_);
        throw error;
    }
    layout_ = static_cast<Layout*>(mapped);
    if (std::memcmp(layout_->magic, kMagic, sizeof(kMagic)) != 0) {
        // New, or not ours: start empty.
        std::memset(layout_, 0, sizeof(Layout));
        std::memcpy(layout_->magic, kMagic, sizeof(kMagic));
    }
    Note& running = layout_->running;
    if (running.key != 0) {
        running.id_length = std::min<std::uint32_t>(running.id_length, sizeof(running.id));
        layout_->blamed[layout_->next_blame % kBlamedCapacity] = running;
        layout_->next_blame = (layout_->next_blame + 1) % kBlamedCapacity;
        running.key = 0;
    }
}

ConsumerJournal::~ConsumerJournal() {
    ::munmap(layout_, sizeof(Layout));
    ::close(fd_);
}

std::uint64_t ConsumerJournal::Key(std::string_view queue, std::string_view message_id, std::string_view body) {
    std::uint64_t hash = Fnv1a(0xcbf29ce484222325ULL, queue);
    hash = message_id.empty() ? Fnv1a(Fnv1a(hash, "\nbody\n"), body) : Fnv1a(Fnv1a(hash, "\nid\n"), message_id);
    return hash == 0 ? 1 : hash;
}

void ConsumerJournal::Enter(std::uint64_t key, std::string_view message_id) {
    Note& running = layout_->running;
    const auto length = std::min(message_id.size(), sizeof(running.id));
    std::memcpy(running.id, message_id.data(), length);
    running.id_length = static_cast<std::uint32_t>(length);
    // The key marks the note complete: a process ended between the stores leaves no half note. Only
    // the compiler could reorder them; the process's own stores reach the mapping in order.
    std::atomic_signal_fence(std::memory_order_seq_cst);
    running.key = key;
    std::atomic_signal_fence(std::memory_order_seq_cst);
}

void ConsumerJournal::Leave() {
    std::atomic_signal_fence(std::memory_order_seq_cst);
    layout_->running.key = 0;
}

bool ConsumerJournal::TakeBlame(std::uint64_t key) {
    for (Note& note : layout_->blamed) {
        if (note.key != key) continue;
        note.key = 0;
        return true;
    }
    return false;
}

std::vector<std::string> ConsumerJournal::BlamedIds() const {
    std::vector<std::string> ids;
    for (const Note& note : layout_->blamed)
        if (note.key != 0) ids.emplace_back(note.id, std::min<std::size_t>(note.id_length, sizeof(note.id)));
    return ids;
}

}  // namespace messaging
