//! The output store's SQLite backend: outputs go to the journal's `outputs` table through its
//! writer thread, and this process's outputs are also kept in memory, so reading one back right
//! after it was stored never waits for a commit. Outputs of earlier runs (a resumed run's, or
//! one the REPL asks for) are read from the file.

use std::collections::HashSet;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, params};

use super::{JournalError, SqliteJournal};
use crate::store::{MemoryOutputStore, OutputRecord, OutputStore};
use crate::value::{Value, from_json};

/// An [`OutputStore`] in the journal's file, so a resumed run, or a later process, finds the
/// outputs of earlier runs.
pub struct SqliteOutputStore {
    memory: MemoryOutputStore,
    journal: Rc<SqliteJournal>,
    conn: Connection,
}

const COLUMNS: &str = "id, run_id, task_id, attempt, producer, value, size";

fn record(r: &rusqlite::Row<'_>) -> rusqlite::Result<OutputRecord> {
    let value: String = r.get(5)?;
    Ok(OutputRecord {
        id: r.get::<_, String>(0)?.into(),
        run_id: r.get::<_, String>(1)?.into(),
        task_id: r.get::<_, String>(2)?.into(),
        attempt: r.get(3)?,
        producer: r.get::<_, String>(4)?.into(),
        // Written by `Value::to_json`, so it decodes; a damaged row reads as null.
        value: from_json(&value).unwrap_or(Value::Null),
        size: r.get::<_, i64>(6)? as usize,
    })
}

impl SqliteOutputStore {
    /// An output store writing through `journal`, reading its file.
    pub fn new(journal: Rc<SqliteJournal>) -> Result<SqliteOutputStore, JournalError> {
        let conn = super::open::open_connection(journal.path())?;
        Ok(SqliteOutputStore { memory: MemoryOutputStore::new(), journal, conn })
    }

    fn query(&self, sql: &str, args: impl rusqlite::Params) -> Vec<OutputRecord> {
        let rows = self.conn.prepare_cached(sql).and_then(|mut stmt| {
            stmt.query_map(args, record).and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        });
        rows.unwrap_or_else(|e| {
            tracing::warn!("reading outputs from {}: {e}", self.journal.path().display());
            Vec::new()
        })
    }

    /// The file's rows, then this process's that are not committed yet.
    fn merged(&self, mut stored: Vec<OutputRecord>, mine: Vec<OutputRecord>) -> Vec<OutputRecord> {
        let seen: HashSet<Arc<str>> = stored.iter().map(|r| r.id.clone()).collect();
        stored.extend(mine.into_iter().filter(|r| !seen.contains(&r.id)));
        stored
    }

    /// The journal file the outputs are kept in.
    pub fn path(&self) -> &Path {
        self.journal.path()
    }
}

impl OutputStore for SqliteOutputStore {
    fn append(
        &self,
        run_id: &Arc<str>,
        task_id: &Arc<str>,
        attempt: u32,
        producer: &Arc<str>,
        value: Value,
        size: usize,
    ) -> Arc<str> {
        let id = self.memory.append(run_id, task_id, attempt, producer, value, size);
        if let Some(record) = self.memory.get(&id) {
            self.journal.output(record);
        }
        id
    }

    fn get(&self, id: &str) -> Option<OutputRecord> {
        self.memory.get(id).or_else(|| {
            let sql = format!("SELECT {COLUMNS} FROM outputs WHERE id = ?1");
            self.conn.query_row(&sql, [id], record).optional().unwrap_or(None)
        })
    }

    fn latest_by_producer(&self, producer: &str) -> Option<OutputRecord> {
        self.memory.latest_by_producer(producer).or_else(|| {
            let sql = format!("SELECT {COLUMNS} FROM outputs WHERE producer = ?1 ORDER BY rowid DESC LIMIT 1");
            self.query(&sql, [producer]).pop()
        })
    }

    fn list_for_attempt(&self, task_id: &str, attempt: u32) -> Vec<OutputRecord> {
        let sql = format!("SELECT {COLUMNS} FROM outputs WHERE task_id = ?1 AND attempt = ?2 ORDER BY rowid");
        self.merged(self.query(&sql, params![task_id, attempt]), self.memory.list_for_attempt(task_id, attempt))
    }

    fn refs_for_run(&self, run_id: &str) -> Vec<Arc<str>> {
        let sql = format!("SELECT {COLUMNS} FROM outputs WHERE run_id = ?1 ORDER BY rowid");
        let mine: Vec<OutputRecord> =
            self.memory.refs_for_run(run_id).iter().filter_map(|id| self.memory.get(id)).collect();
        self.merged(self.query(&sql, [run_id]), mine).into_iter().map(|r| r.id).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }

    #[test]
    fn outputs_are_found_at_once_and_by_a_later_process() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let (run, t1, writer) = (Arc::from("r-1"), Arc::from("r-1.1"), Arc::from("writer"));
        let (first, second) = {
            let journal = Rc::new(SqliteJournal::open(&path).unwrap());
            let store = SqliteOutputStore::new(journal.clone()).unwrap();
            let first = store.append(&run, &t1, 1, &writer, Value::from("one"), 5);
            assert_eq!(store.get(&first).unwrap().value, Value::from("one"), "read back before any commit");
            let second = store.append(&run, &t1, 2, &writer, Value::from("two"), 5);
            block_on(journal.flush().wait()).unwrap();
            (first, second)
        };
        let store = SqliteOutputStore::new(Rc::new(SqliteJournal::open(&path).unwrap())).unwrap();
        let got = store.get(&first).unwrap();
        assert_eq!(
            (&*got.run_id, &*got.task_id, got.attempt, got.value.clone()),
            ("r-1", "r-1.1", 1, Value::from("one"))
        );
        assert_eq!(store.latest_by_producer("writer").unwrap().id, second);
        assert_eq!(store.list_for_attempt("r-1.1", 2).len(), 1);
        assert_eq!(store.refs_for_run("r-1"), [first, second]);
        assert!(store.get("out-0000000000").is_none());
    }
}
