// Which message's consumer was running when a process ended: a small file mapped into memory, in
// which the bus notes each message as its consumer starts and clears the note when it returns. The
// kernel keeps what a process wrote to a shared mapping when the process dies, so the next process
// to open the file finds the note and blames that message alone.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace messaging {

class ConsumerJournal {
  public:
    // Messages blamed and not yet counted, oldest dropped first: one per process that ended, so more
    // than enough for the few restarts between a message's returns.
    static constexpr int kBlamedCapacity = 16;

    // Opens (creating) and maps `path`. A note left by the process that had it before becomes a
    // blame. Throws std::runtime_error naming the path when the file cannot be opened or mapped.
    explicit ConsumerJournal(const std::string& path);
    ~ConsumerJournal();
    ConsumerJournal(const ConsumerJournal&) = delete;
    ConsumerJournal& operator=(const ConsumerJournal&) = delete;

    // What names a message across its returns: its queue and message id, or its body when it has
    // no id. Never 0, which marks an empty slot.
    static std::uint64_t Key(std::string_view queue, std::string_view message_id, std::string_view body);

    // The consumer of the message `key` starts; `message_id` is kept for the log of the next process.
    void Enter(std::uint64_t key, std::string_view message_id);
    // That consumer returned or threw.
    void Leave();

    // Whether a consumer of `key` was running when a process ended, and that blame not yet taken;
    // a blame is taken once, so each ended process counts once against the message.
    bool TakeBlame(std::uint64_t key);
    // The message ids of the blames not yet taken, for the log.
    std::vector<std::string> BlamedIds() const;

  private:
    struct Note {
        std::uint64_t key;
        std::uint32_t id_length;
        char id[116];
    };
    struct Layout {
        char magic[8];
        std::uint32_t next_blame;  // the slot the next blame overwrites
        std::uint32_t reserved;
        Note running;
        Note blamed[kBlamedCapacity];
    };

    int fd_ = -1;
    Layout* layout_ = nullptr;
};

}  // namespace messaging
