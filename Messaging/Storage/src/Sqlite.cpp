#include "Storage/Sqlite.h"

#include <spdlog/spdlog.h>

#include <filesystem>
#include <system_error>

namespace messaging {
namespace {

// The writer and the checkpoint connection set the same level: it decides the checkpoints' fsyncs too.
std::string SynchronousPragma(SqliteSync sync) {
    return sync == SqliteSync::kFull ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL";
}

void Check(sqlite3* db, int rc, std::string_view what) {
    if (rc == SQLITE_OK || rc == SQLITE_DONE || rc == SQLITE_ROW) return;
    throw SqliteError(std::string(what) + ": " + (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc)), rc);
}

}  // namespace

void StoreHealthRecord::RecordFailure(int rc, const std::string& message) {
    switch (rc & 0xff) {
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
            // A failing store stays failing: being locked out of it says nothing of whether it works.
            if (health_.state == StoreState::kFailing) return;
            health_.state = StoreState::kBusy;
            health_.detail = "another connection holds the write lock: " + message;
            return;
        case SQLITE_IOERR:
        case SQLITE_FULL:
        case SQLITE_CORRUPT:
        case SQLITE_NOTADB:
        case SQLITE_CANTOPEN:
        case SQLITE_READONLY:
        case SQLITE_NOMEM:
        case SQLITE_PERM:
        case SQLITE_PROTOCOL:
        case SQLITE_NOLFS:
            health_.state = StoreState::kFailing;
            health_.detail = message;
            last_fault_ = std::chrono::steady_clock::now();
            committed_since_fault_ = false;
            return;
        default:
            return;
    }
}

void StoreHealthRecord::RecordCommitted() {
    if (health_.state == StoreState::kFailing) {
        committed_since_fault_ = true;
        return;
    }
    health_.state = StoreState::kOk;
    health_.detail.clear();
}

const StoreHealth& StoreHealthRecord::Now() {
    if (health_.state == StoreState::kFailing && committed_since_fault_ &&
        std::chrono::steady_clock::now() - last_fault_ >= fault_hold_) {
        health_.state = StoreState::kOk;
        health_.detail.clear();
    }
    return health_;
}

Statement::Statement(sqlite3* db, std::string_view sql, StoreHealthRecord* health) : db_(db), health_(health) {
    Check(db_,
          sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT, &statement_,
                             nullptr),
          "prepare");
}

Statement::~Statement() {
    sqlite3_finalize(statement_);
}

Statement& Statement::Bind(int index, std::string_view value) {
    Check(db_, sqlite3_bind_text(statement_, index, value.data(), static_cast<int>(value.size()), SQLITE_TRANSIENT),
          "bind");
    return *this;
}

Statement& Statement::BindUnowned(int index, std::string_view value) {
    // An empty view may have no data pointer, which SQLite would bind as NULL.
    const char* text = value.empty() ? "" : value.data();
    Check(db_, sqlite3_bind_text(statement_, index, text, static_cast<int>(value.size()), SQLITE_STATIC), "bind");
    return *this;
}

Statement& Statement::Bind(int index, std::int64_t value) {
    Check(db_, sqlite3_bind_int64(statement_, index, value), "bind");
    return *this;
}

Statement& Statement::BindNull(int index) {
    Check(db_, sqlite3_bind_null(statement_, index), "bind");
    return *this;
}

Statement& Statement::Bind(int index, const std::optional<std::string>& value) {
    return value ? Bind(index, std::string_view(*value)) : BindNull(index);
}

bool Statement::Step() {
    const int rc = sqlite3_step(statement_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    const std::string message = sqlite3_errmsg(db_);
    sqlite3_reset(statement_);
    if (health_) health_->RecordFailure(rc, message);
    // Another connection holds the lock and the busy timeout ran out: work to run again later.
    if ((rc & 0xff) == SQLITE_BUSY) throw StoreBusy("the database is locked by another writer: " + message);
    throw SqliteError("step: " + message, rc);
}

void Statement::Run() {
    while (Step()) {
    }
}

void Statement::Reset() {
    sqlite3_reset(statement_);
    sqlite3_clear_bindings(statement_);
}

std::string Statement::Text(int column) const {
    const auto* text = sqlite3_column_text(statement_, column);
    return text ? std::string(reinterpret_cast<const char*>(text),
                              static_cast<std::size_t>(sqlite3_column_bytes(statement_, column)))
                : std::string();
}

std::int64_t Statement::Integer(int column) const {
    return sqlite3_column_int64(statement_, column);
}

bool Statement::IsNull(int column) const {
    return sqlite3_column_type(statement_, column) == SQLITE_NULL;
}

SqliteDatabase::SqliteDatabase(const std::string& path, SqliteSync sync) {
    // Memory statistics take a process-wide mutex on every allocation SQLite makes (a few hundred per
    // order); nothing here reads them. This only takes effect before SQLite's first use in the process.
    static const int statistics_off = sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    (void)statistics_off;
    if (path != ":memory:")
        if (auto dir = std::filesystem::path(path).parent_path(); !dir.empty())
            std::filesystem::create_directories(dir);
    const int rc =
        sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
    if (rc != SQLITE_OK) {
        const std::string message = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
        sqlite3_close(db_);
        db_ = nullptr;
        throw SqliteError("cannot open " + path + ": " + message, rc);
    }
    sqlite3_busy_timeout(db_, kOpeningBusyTimeoutMs);
    Execute("PRAGMA journal_mode=WAL");
    Execute(SynchronousPragma(sync));
    Execute("PRAGMA foreign_keys=ON");
    if (path != ":memory:" && !path.empty()) {
        try {
            checkpointer_ = std::make_unique<WalCheckpointer>(db_, path, sync);
        } catch (const SqliteError& e) {
            spdlog::warn("SQLite checkpoints of {} stay on the writer's thread: {}", path, e.what());
        }
    }
}

void SqliteDatabase::SetBusyTimeout(std::chrono::milliseconds timeout) {
    sqlite3_busy_timeout(db_, static_cast<int>(timeout.count()));
}

SqliteDatabase::~SqliteDatabase() {
    checkpointer_.reset();
    statements_.clear();  // finalize before close
    sqlite3_close(db_);
}

WalCheckpointer::WalCheckpointer(sqlite3* writer, const std::string& path, SqliteSync sync) : writer_(writer) {
    const int rc = sqlite3_open_v2(path.c_str(), &own_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr);
    // Reading the schema makes the new connection see the WAL; its synchronous level decides the
    // checkpoint's fsyncs, so it is the writer's.
    const std::string setup = SynchronousPragma(sync) + "; SELECT count(*) FROM sqlite_master";
    if (rc != SQLITE_OK || sqlite3_exec(own_, setup.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) {
        const std::string message = own_ ? sqlite3_errmsg(own_) : sqlite3_errstr(rc);
        sqlite3_close(own_);
        throw SqliteError("cannot open a checkpoint connection: " + message, rc == SQLITE_OK ? SQLITE_ERROR : rc);
    }
    try {
        thread_ = std::thread([this] { Run(); });
    } catch (const std::system_error& e) {
        sqlite3_close(own_);
        throw SqliteError(std::string("cannot start the checkpoint thread: ") + e.what(), SQLITE_ERROR);
    }
    sqlite3_wal_hook(writer_, &WalCheckpointer::OnCommit, this);  // also turns wal_autocheckpoint off
}

WalCheckpointer::~WalCheckpointer() {
    sqlite3_wal_hook(writer_, nullptr, nullptr);
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    wake_.notify_one();
    thread_.join();
    sqlite3_close(own_);
}

int WalCheckpointer::OnCommit(void* self, sqlite3* writer, const char* database, int frames) {
    auto* checkpointer = static_cast<WalCheckpointer*>(self);
    if (frames < checkpointer->requested_at_frames_) checkpointer->requested_at_frames_ = 0;  // restarted
    if (frames >= kInlineFrames) {
        // Nothing commits while the writer runs it, so it copies every frame and the next commit
        // restarts the WAL, unless the thread is in a checkpoint right now (SQLITE_BUSY: the next
        // commit tries again) or a reader still needs old frames.
        if (sqlite3_wal_checkpoint_v2(writer, database, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr) == SQLITE_OK)
            ++checkpointer->inline_;
        checkpointer->requested_at_frames_ = 0;
    } else if (frames - checkpointer->requested_at_frames_ >= kStartFrames) {
        checkpointer->requested_at_frames_ = frames;
        {
            std::lock_guard lock(checkpointer->mutex_);
            checkpointer->requested_ = true;
        }
        checkpointer->wake_.notify_one();
    }
    return SQLITE_OK;
}

void WalCheckpointer::Run() {
    std::unique_lock lock(mutex_);
    for (;;) {
        wake_.wait(lock, [this] { return requested_ || stopping_; });
        if (stopping_) return;
        requested_ = false;
        lock.unlock();
        // PASSIVE: copies what no reader still needs and never waits for, or blocks, the writer.
        const int rc = sqlite3_wal_checkpoint_v2(own_, nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
        if (rc == SQLITE_OK)
            ++background_;
        else if (rc != SQLITE_BUSY)
            spdlog::warn("SQLite background checkpoint failed: {}", sqlite3_errmsg(own_));
        lock.lock();
    }
}

void SqliteDatabase::Execute(std::string_view sql) {
    char* error = nullptr;
    const int rc = sqlite3_exec(db_, std::string(sql).c_str(), nullptr, nullptr, &error);
    if (rc != SQLITE_OK) {
        std::string message = error ? error : sqlite3_errstr(rc);
        sqlite3_free(error);
        health_.RecordFailure(rc, message);
        throw SqliteError(message, rc);
    }
}

Statement& SqliteDatabase::Prepare(std::string_view sql) {
    auto found = statements_.find(sql);
    if (found == statements_.end())
        found = statements_.emplace(std::string(sql), std::make_unique<Statement>(db_, sql, &health_)).first;
    found->second->Reset();
    return *found->second;
}

StoreHealth SqliteDatabase::CheckHealth() {
    if (health_.Now().state != StoreState::kBusy) return health_.Now();
    if (!sqlite3_get_autocommit(db_)) {
        health_.RecordCommitted();  // our transaction is open: we hold the write lock
        return health_.Now();
    }
    try {
        Prepare("BEGIN IMMEDIATE").Run();
        Prepare("ROLLBACK").Run();
        health_.RecordCommitted();  // the lock is free: nothing holds the database back
    } catch (const StoreBusy&) {
        // Still held: the state says so already.
    } catch (const SqliteError&) {
        // Recorded by the statement when it is a fault of the database.
    }
    return health_.Now();
}

int SqliteDatabase::UserVersion() {
    auto& statement = Prepare("PRAGMA user_version");
    statement.Step();
    const int version = static_cast<int>(statement.Integer(0));
    statement.Reset();
    return version;
}

void SqliteDatabase::SetUserVersion(int version) {
    // PRAGMA takes no bound parameters; the value is an int we produced.
    Execute("PRAGMA user_version=" + std::to_string(version));
}

Transaction::Transaction(SqliteDatabase& db) : db_(db), nested_(sqlite3_get_autocommit(db.raw()) == 0) {
    db_.Prepare(nested_ ? "SAVEPOINT nested_transaction" : "BEGIN IMMEDIATE").Run();
}

Transaction::~Transaction() {
    if (done_) return;
    try {
        if (nested_) {
            db_.Prepare("ROLLBACK TO nested_transaction").Run();
            db_.Prepare("RELEASE nested_transaction").Run();
        } else {
            db_.Prepare("ROLLBACK").Run();
        }
    } catch (...) {
    }
}

void Transaction::Commit() {
    db_.Prepare(nested_ ? "RELEASE nested_transaction" : "COMMIT").Run();
    done_ = true;
    if (!nested_) db_.RecordCommitted();
}

void MigrateSchema(SqliteDatabase& db, std::string_view owner, const std::vector<std::string_view>& steps) {
    const int version = db.UserVersion();
    const int latest = static_cast<int>(steps.size());
    if (version > latest)
        throw SqliteError("the database schema (version " + std::to_string(version) + ") is newer than this " +
                              std::string(owner) + " understands (" + std::to_string(latest) + ")",
                          SQLITE_ERROR);
    for (int step = version + 1; step <= latest; ++step) {
        Transaction transaction(db);
        db.Execute(steps[static_cast<std::size_t>(step - 1)]);
        db.SetUserVersion(step);
        transaction.Commit();
    }
}

}  // namespace messaging
