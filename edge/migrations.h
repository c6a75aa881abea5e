// Numbered schema migrations of the edge store. PRAGMA user_version holds the number of the
// last migration applied; migration N moves a database from version N-1 to N. Migrations are
// append-only: a released migration is never edited, a change is a new migration.
// Fixture databases of older versions live in edge/testdata/ (see make_fixture_v1.sh).
#pragma once

#include <string>
#include <vector>

namespace freshsync::edge {

struct Migration {
  int version;
  const char* description;
  const char* sql;
};

const std::vector<Migration>& StoreMigrations();
int LatestStoreVersion();

}  // namespace freshsync::edge
