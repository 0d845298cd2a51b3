// RAII over the SQLite C API: a database handle, prepared statements (cached by SQL text, so each is
// compiled once), and a transaction that rolls back unless committed. Errors become SqliteError.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace messaging {

class SqliteError : public std::runtime_error {
  public:
    SqliteError(const std::string& message, int code) : std::runtime_error(message), code_(code) {}
    int code() const { return code_; }

  private:
    int code_;
};

enum class SqliteSync { kNormal, kFull };

class Statement {
  public:
    Statement(sqlite3* db, std::string_view sql);
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

    bool Step();  // true while a row is available
    void Run();   // steps to completion
    void Reset();

    std::string Text(int column) const;
    std::int64_t Integer(int column) const;
    bool IsNull(int column) const;

  private:
    sqlite3* db_;
    sqlite3_stmt* statement_ = nullptr;
};

class SqliteDatabase {
  public:
    // Opens (creating) the file in WAL mode with the given synchronous level; ":memory:" works too.
    SqliteDatabase(const std::string& path, SqliteSync sync = SqliteSync::kNormal);
    ~SqliteDatabase();
    SqliteDatabase(const SqliteDatabase&) = delete;
    SqliteDatabase& operator=(const SqliteDatabase&) = delete;

    void Execute(std::string_view sql);
    // A cached statement, reset and with its bindings cleared. The lookup builds no string: it runs
    // for every statement executed.
    Statement& Prepare(std::string_view sql);
    int Changes() const { return sqlite3_changes(db_); }
    int UserVersion();
    void SetUserVersion(int version);
    sqlite3* raw() { return db_; }

  private:
    sqlite3* db_ = nullptr;
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
