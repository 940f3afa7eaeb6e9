//! The relay's `EventLog` conformance suite on every log: the in-memory reference and SQLite
//! (durable: it also runs the reopen rule).

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

mod memory {
    use filesync_core::server::MemoryEventLog;
    filesync_core::event_log_conformance!(
        #[tokio::test]
        MemoryEventLog::new()
    );
}

mod sqlite {
    use async_trait::async_trait;
    use filesync_core::server::{EventLog, SqliteEventLog};
    use filesync_core::testing::event_log::{DurableEventLogFixture, EventLogFixture};

    use crate::common::relay::open_log;

    /// A log in a fresh temporary directory, removed when dropped.
    struct Scratch {
        dir: tempfile::TempDir,
        log: SqliteEventLog,
    }

    impl Scratch {
        async fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let log = open_log(dir.path()).await;
            Self { dir, log }
        }
    }

    impl EventLogFixture for Scratch {
        fn log(&self) -> &dyn EventLog {
            &self.log
        }
    }

    #[async_trait]
    impl DurableEventLogFixture for Scratch {
        async fn reopen(&mut self) {
            self.log = open_log(self.dir.path()).await;
        }
    }

    filesync_core::event_log_conformance!(
        #[tokio::test]
        durable Scratch::new().await
    );
}
