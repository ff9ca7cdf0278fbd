//! The migration plan both backends follow: numbered migrations, append only, recorded in a
//! `schema_version` table (one row per applied version). Each backend runs the plan inside one
//! transaction of its own; this module only decides which migrations are still due.

use super::StoreError;

/// A backend's migrations; version `n` is `migrations[n - 1]`.
pub(super) type Migrations = &'static [&'static str];

/// The newest version a backend's migrations reach.
pub(super) fn known_version(migrations: Migrations) -> i64 {
    i64::try_from(migrations.len()).unwrap_or(i64::MAX)
}

/// The `(version, sql)` pairs a database at version `found` still needs, oldest first.
///
/// A database at a newer version than this build knows is refused rather than touched.
pub(super) fn pending(migrations: Migrations, found: i64) -> Result<Vec<(i64, &'static str)>, StoreError> {
    let known = known_version(migrations);
    if found > known {
        return Err(StoreError::NewerSchema { found, known });
    }
    Ok((1..).zip(migrations.iter().copied()).filter(|(version, _)| *version > found).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const THREE: Migrations = &["one", "two", "three"];

    #[test]
    fn plans_what_is_due() {
        let cases: &[(i64, &[i64])] = &[(-1, &[1, 2, 3]), (0, &[1, 2, 3]), (1, &[2, 3]), (2, &[3]), (3, &[])];
        for (found, due) in cases {
            let versions: Vec<i64> = pending(THREE, *found).unwrap().into_iter().map(|(version, _)| version).collect();
            assert_eq!(versions, *due, "found = {found}");
        }
        assert_eq!(pending(THREE, 1).unwrap(), [(2, "two"), (3, "three")]);
        assert_eq!(known_version(THREE), 3);
        assert!(pending(&[], 0).unwrap().is_empty());
    }

    #[test]
    fn refuses_a_newer_database() {
        assert!(matches!(pending(THREE, 4), Err(StoreError::NewerSchema { found: 4, known: 3 })));
    }
}
