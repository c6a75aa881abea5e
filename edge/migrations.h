// Numbered schema migrations of the edge store, run by the shared runner (sqlite/migrate.h):
// PRAGMA user_version holds the number of the last migration applied; migration N moves a
// database from version N-1 to N, its steps (SQL, or a C++ data step) and the version bump in
// one transaction. Migrations are append-only: a released migration is never edited, a change
// is a new migration.
// Fixture databases of older versions live in edge/testdata/ (see make_fixture_v1.sh).
#pragma once

#include <vector>

#include "sqlite/migrate.h"

namespace freshsync::edge {

const std::vector<sqlite::Migration>& StoreMigrations();
int LatestStoreVersion();

}  // namespace freshsync::edge
