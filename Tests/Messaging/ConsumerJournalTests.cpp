// The consumer journal on its own: a note survives its process being killed and becomes one blame,
// a consumer that returned leaves none, blames are bounded, and a file that is not a journal or a
// path that cannot be opened is handled.
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <fstream>
#include <stdexcept>

#include "Bus/ConsumerJournal.h"
#include "Support/Waiting.h"

using messaging::ConsumerJournal;

TEST_SUITE("Bus.ConsumerJournal") {
    TEST_CASE("a note left by a process killed in its consumer becomes one blame - taken once") {
        test_support::TempDir dir;
        const std::string path = dir.File("journal");
        const auto key = ConsumerJournal::Key("payment-service", "m-1", "");
        const pid_t child = ::fork();
        REQUIRE(child >= 0);
        if (child == 0) {
            ConsumerJournal journal(path);
            journal.Enter(key, "m-1");
            ::raise(SIGKILL);
            ::_exit(1);  // not reached
        }
        int status = 0;
        REQUIRE(::waitpid(child, &status, 0) == child);
        REQUIRE(WIFSIGNALED(status));
        CHECK(WTERMSIG(status) == SIGKILL);

        {
            ConsumerJournal journal(path);
            CHECK(journal.BlamedIds() == std::vector<std::string>{"m-1"});
            CHECK_FALSE(journal.TakeBlame(ConsumerJournal::Key("payment-service", "m-2", "")));
            CHECK(journal.TakeBlame(key));
            CHECK_FALSE(journal.TakeBlame(key));
        }
        // Taking it was written to the file: the next process does not count it again.
        ConsumerJournal reopened(path);
        CHECK(reopened.BlamedIds().empty());
        CHECK_FALSE(reopened.TakeBlame(key));
    }

    TEST_CASE("a consumer that returned leaves nothing to blame") {
        test_support::TempDir dir;
        const auto key = ConsumerJournal::Key("q", "m-1", "");
        {
            ConsumerJournal journal(dir.File("journal"));
            journal.Enter(key, "m-1");
            journal.Leave();
        }
        ConsumerJournal journal(dir.File("journal"));
        CHECK(journal.BlamedIds().empty());
        CHECK_FALSE(journal.TakeBlame(key));
    }

    TEST_CASE("at most kBlamedCapacity blames are kept - the oldest dropped first") {
        test_support::TempDir dir;
        const int notes = ConsumerJournal::kBlamedCapacity + 1;
        // Each opening turns the note its predecessor left into a blame, then leaves one of its own.
        for (int i = 0; i < notes; ++i) {
            ConsumerJournal journal(dir.File("journal"));
            const std::string id = "m-" + std::to_string(i);
            journal.Enter(ConsumerJournal::Key("q", id, ""), id);
        }
        ConsumerJournal journal(dir.File("journal"));
        const auto blamed = journal.BlamedIds();
        CHECK(blamed.size() == static_cast<std::size_t>(ConsumerJournal::kBlamedCapacity));
        CHECK_FALSE(journal.TakeBlame(ConsumerJournal::Key("q", "m-0", "")));
        CHECK(journal.TakeBlame(ConsumerJournal::Key("q", "m-1", "")));
        CHECK(journal.TakeBlame(ConsumerJournal::Key("q", "m-" + std::to_string(notes - 1), "")));
    }

    TEST_CASE("a long message id is kept cut short - the key still tells messages apart") {
        test_support::TempDir dir;
        const std::string long_id(500, 'x');
        const auto key = ConsumerJournal::Key("q", long_id, "");
        { ConsumerJournal(dir.File("journal")).Enter(key, long_id); }
        ConsumerJournal journal(dir.File("journal"));
        REQUIRE(journal.BlamedIds().size() == 1);
        CHECK(journal.BlamedIds()[0] == long_id.substr(0, journal.BlamedIds()[0].size()));
        CHECK_FALSE(journal.TakeBlame(ConsumerJournal::Key("q", long_id + "y", "")));
        CHECK(journal.TakeBlame(key));
    }

    TEST_CASE("the key: queue and message id - or the body when there is no id") {
        CHECK(ConsumerJournal::Key("a", "m", "body 1") == ConsumerJournal::Key("a", "m", "body 2"));
        CHECK(ConsumerJournal::Key("a", "m", "") != ConsumerJournal::Key("b", "m", ""));
        CHECK(ConsumerJournal::Key("a", "", "body 1") != ConsumerJournal::Key("a", "", "body 2"));
        CHECK(ConsumerJournal::Key("a", "", "body 1") == ConsumerJournal::Key("a", "", "body 1"));
        CHECK(ConsumerJournal::Key("a", "x", "") != ConsumerJournal::Key("a", "", "x"));
    }

    TEST_CASE("a file that is not a journal starts empty - a path that cannot be opened throws naming it") {
        test_support::TempDir dir;
        std::ofstream(dir.File("journal")) << std::string(4096, '\x7f');
        {
            ConsumerJournal journal(dir.File("journal"));
            CHECK(journal.BlamedIds().empty());
        }
        const std::string missing = dir.File("no-such-dir/journal");
        CHECK_THROWS_WITH_AS(ConsumerJournal{missing}, doctest::Contains(missing.c_str()), std::runtime_error);
    }
}
