// RAII over the SQLite C API: a database handle, prepared statements (cached by SQL text, so each is
// compiled once), a transaction that rolls back unless committed, and the WAL checkpoints run on a
// thread of their own. Errors become SqliteError.
#pragma once

#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "Runtime/StoreHealth.h"
#include "Runtime/UnitOfWork.h"

namespace messaging {

class SqliteError : public std::runtime_error {
  public:
    SqliteError(const std::string& message, int code) : std::runtime_error(message), code_(code) {}
    int code() const { return code_; }

  private:
    int code_;
};

enum class SqliteSync { kNormal, kFull };

// What a database's statements found, kept for its health answers. A write lock held by another
// connection makes it busy until the lock is found free or a transaction commits. A fault of the
// database itself (an I/O error, a full disk, a damaged, unopenable or read-only file, no memory)
// makes it failing, and it stays failing until a transaction has committed since the last fault and
// the fault hold has passed since it: a nearly full disk refuses some writes and takes others, and
// health should say so steadily rather than flap between them. A constraint or SQL error is no fault
// of the database and changes nothing. Used on the connection's thread only.
class StoreHealthRecord {
  public:
    static constexpr std::chrono::milliseconds kDefaultFaultHold{10000};

    // What SQLite's result code `rc` (with its message) says about the database.
    void RecordFailure(int rc, const std::string& message);
    // A transaction committed: a busy database is free; a failing one may become ok (Now()).
    void RecordCommitted();
    void set_fault_hold(std::chrono::milliseconds hold) { fault_hold_ = hold; }
    // The state now.
    const StoreHealth& Now();

  private:
    StoreHealth health_{.provider = "sqlite"};
    std::chrono::steady_clock::time_point last_fault_{};
    bool committed_since_fault_ = false;
    std::chrono::milliseconds fault_hold_ = kDefaultFaultHold;
};

class Statement {
  public:
    // `health`, when given, hears what each step finds: the lock held by another writer, or a fault of
    // the database itself.
    Statement(sqlite3* db, std::string_view sql, StoreHealthRecord* health = nullptr);
    ~Statement();
    Statement(const Statement&) = delete;
    Statement& operator=(const Statement&) = delete;

    Statement& Bind(int index, std::string_view value);
    Statement& Bind(int index, std::int64_t value);
    Statement& BindNull(int index);
    Statement& Bind(int index, const std::optional<std::string>& value);
    Statement& Bind(int index, const char* value) { return Bind(index, std::string_view(value)); }
    Statement& Bind(int index, const std::string& value) { return Bind(index, std::string_view(value)); }
    Statement& Bind(int index, int value) { return Bind(index, static_cast<std::int64_t>(value)); }
    // Binds text without copying it: `value` must stay alive and unchanged until the statement has
    // run (Prepare clears every binding before the statement is used again). For large values.
    Statement& BindUnowned(int index, std::string_view value);

    bool Step();  // true while a row is available; StoreBusy when the lock is held past the busy timeout
    void Run();   // steps to completion
    void Reset();

    std::string Text(int column) const;
    std::int64_t Integer(int column) const;
    bool IsNull(int column) const;

  private:
    sqlite3* db_;
    sqlite3_stmt* statement_ = nullptr;
    StoreHealthRecord* health_;
};

// Copies a WAL's pages back into the database file on a thread with its own connection, so that the
// writer's thread rarely waits for a checkpoint (its page copies and, unless synchronous=OFF, two
// fsyncs). It replaces SQLite's automatic
// checkpoint on the writer's connection: the writer's WAL hook asks the thread for a PASSIVE
// checkpoint each time the WAL has grown by kStartFrames frames. The WAL restarts from its beginning
// only at a commit that finds every frame copied, which a checkpoint running beside a busy writer
// seldom leaves; so once the WAL reaches kInlineFrames the writer checkpoints itself (PASSIVE, as
// SQLite would), which finds most frames already copied and lets the next commit restart the WAL.
class WalCheckpointer {
  public:
    static constexpr int kStartFrames = 1000;                // SQLite's own wal_autocheckpoint default
    static constexpr int kInlineFrames = 10 * kStartFrames;  // a WAL of up to about 40 MB

    // Installs the WAL hook on `writer` (a connection to `path`) and starts the thread; throws
    // SqliteError when its connection cannot be opened or its thread started (the writer then keeps
    // SQLite's own checkpoints).
    WalCheckpointer(sqlite3* writer, const std::string& path, SqliteSync sync);
    ~WalCheckpointer();  // stops and joins the thread; the writer's hook is removed
    WalCheckpointer(const WalCheckpointer&) = delete;
    WalCheckpointer& operator=(const WalCheckpointer&) = delete;

    std::uint64_t background_checkpoints() const { return background_.load(); }
    std::uint64_t inline_checkpoints() const { return inline_.load(); }

  private:
    static int OnCommit(void* self, sqlite3* writer, const char* database, int frames);
    void Run();

    sqlite3* writer_;
    sqlite3* own_ = nullptr;
    std::mutex mutex_;
    std::condition_variable wake_;
    bool requested_ = false;
    bool stopping_ = false;
    int requested_at_frames_ = 0;  // the WAL's size at the last request; the writer's thread only
    std::atomic<std::uint64_t> background_{0};
    std::atomic<std::uint64_t> inline_{0};
    std::thread thread_;
};

class SqliteDatabase {
  public:
    // How long a statement waits for a lock another connection holds, until SetBusyTimeout: long
    // enough for a service that starts beside another process's write (its schema, say).
    static constexpr int kOpeningBusyTimeoutMs = 5000;

    // Opens (creating) the file in WAL mode with the given synchronous level, its checkpoints on a
    // WalCheckpointer; ":memory:" works too (no WAL, no checkpointer).
    SqliteDatabase(const std::string& path, SqliteSync sync = SqliteSync::kNormal);
    ~SqliteDatabase();
    SqliteDatabase(const SqliteDatabase&) = delete;
    SqliteDatabase& operator=(const SqliteDatabase&) = delete;

    void Execute(std::string_view sql);
    // A cached statement, reset and with its bindings cleared. The lookup builds no string: it runs
    // for every statement executed.
    Statement& Prepare(std::string_view sql);
    int Changes() const { return sqlite3_changes(db_); }
    // How long a statement waits for another connection's lock before it throws StoreBusy. A
    // connection on the event loop sets 0: the loop must not wait, the work is run again later.
    void SetBusyTimeout(std::chrono::milliseconds timeout);
    int UserVersion();
    void SetUserVersion(int version);
    sqlite3* raw() { return db_; }
    // What its statements found (provider "sqlite"; StoreHealthRecord), on the connection's thread.
    const StoreHealth& Health() { return health_.Now(); }
    // Health(), after finding out without waiting whether a busy database is still held by another
    // connection (BEGIN IMMEDIATE then ROLLBACK; nothing to ask while a transaction of ours is open):
    // busy stays only while it is. Only a commit and the fault hold end a failing state.
    StoreHealth CheckHealth();
    // A transaction committed (Transaction and GroupCommit tell it).
    void RecordCommitted() { health_.RecordCommitted(); }
    // How long a fault keeps the database failing (StoreHealthRecord; 10 s unless set).
    void SetFaultHold(std::chrono::milliseconds hold) { health_.set_fault_hold(hold); }
    // Null for ":memory:", or if the checkpointer could not start (SQLite's own checkpoints then run).
    const WalCheckpointer* checkpointer() const { return checkpointer_.get(); }

  private:
    sqlite3* db_ = nullptr;
    StoreHealthRecord health_;
    std::unique_ptr<WalCheckpointer> checkpointer_;  // declared after db_: stopped before db_ closes
    struct SqlHash {
        using is_transparent = void;
        std::size_t operator()(std::string_view sql) const { return std::hash<std::string_view>{}(sql); }
    };
    std::unordered_map<std::string, std::unique_ptr<Statement>, SqlHash, std::equal_to<>> statements_;
};

// BEGIN IMMEDIATE on construction; ROLLBACK on destruction unless Commit() ran. Inside a transaction
// that is already open (a GroupCommit batch) it is a savepoint: Commit() releases it, and only its own
// writes are rolled back.
class Transaction {
  public:
    explicit Transaction(SqliteDatabase& db);
    ~Transaction();
    Transaction(const Transaction&) = delete;
    Transaction& operator=(const Transaction&) = delete;
    void Commit();

  private:
    SqliteDatabase& db_;
    bool nested_;
    bool done_ = false;
};

// Brings a database's schema up to date. Step i (counting from 1) runs once, in a transaction that
// also sets PRAGMA user_version to i. A database whose version is beyond the last step is refused
// (SqliteError naming `owner`), so an older build never writes to a schema it does not know.
void MigrateSchema(SqliteDatabase& db, std::string_view owner, const std::vector<std::string_view>& steps);

}  // namespace messaging
