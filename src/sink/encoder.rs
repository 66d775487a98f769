//! One table file's Parquet encoding on a task of its own, so that a day's tables encode in
//! parallel: encoding and compression are most of a run's CPU, and on one thread they were
//! what every other stage waited for.
//!
//! The caller sees the encoder's state only as the answer to a request queued among its jobs
//! ([`PartEncoder::ask_state`]): the state after every job before the request, whenever the
//! answer is read. Decisions taken on it (which row group to write out, when to cut a file)
//! are the ones a serial writer would take at that point, so the output does not depend on
//! the threads' timing; and the caller need not wait for the encoder to catch up to ask.

use std::sync::Arc;

use arrow::array::RecordBatch;
use parquet::errors::ParquetError;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::parquet::{FileStats, TableFileWriter};
use super::{UploadProgress, UploadWriter};

/// Jobs queued per encoder: enough to keep it busy while the caller converts, few enough to
/// bound the batches in flight (the caller syncs well before this fills).
const QUEUE: usize = 64;

enum Job {
    Write(RecordBatch),
    /// Ends the row group being built (writes it out).
    FlushRowGroup,
    /// Answers with the encoder's state, once the jobs before are done.
    State(oneshot::Sender<EncoderState>),
    /// Writes the footer and completes the upload.
    Close,
}

/// What an encoder task ends with: the file's stats once closed, `None` when abandoned.
type Outcome = Result<Option<FileStats>, ParquetError>;

/// An encoder's state after the jobs queued before the request for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncoderState {
    /// Memory of the row group being built.
    pub buffered: usize,
    /// Bytes handed to the upload.
    pub written: u64,
    /// Column chunks written out, their metadata held for the footer.
    pub column_chunks: usize,
}

/// A state requested with [`PartEncoder::ask_state`], read with [`PartEncoder::state`].
pub struct AskedState(oneshot::Receiver<EncoderState>);

/// A table file being encoded on its own task.
pub struct PartEncoder {
    jobs: mpsc::Sender<Job>,
    task: JoinHandle<Outcome>,
}

impl PartEncoder {
    /// `progress` counts what `writer` hands to its upload.
    pub fn spawn(writer: TableFileWriter<UploadWriter>, progress: Arc<UploadProgress>) -> Self {
        let (jobs, rx) = mpsc::channel(QUEUE);
        Self {
            jobs,
            task: tokio::spawn(run(writer, progress, rx)),
        }
    }

    /// Queues a batch (waits only while the queue is full).
    pub async fn write(&mut self, batch: RecordBatch) -> Result<(), ParquetError> {
        self.send(Job::Write(batch)).await
    }

    /// Queues the end of the row group being built.
    pub async fn flush_row_group(&mut self) -> Result<(), ParquetError> {
        self.send(Job::FlushRowGroup).await
    }

    /// Queues a request for the state after the jobs queued so far (dropping the answer is
    /// fine: the encoder goes on).
    pub async fn ask_state(&mut self) -> Result<AskedState, ParquetError> {
        let (tx, rx) = oneshot::channel();
        self.send(Job::State(tx)).await?;
        Ok(AskedState(rx))
    }

    /// The answer to `asked` (waits until the encoder gets there).
    pub async fn state(&mut self, asked: AskedState) -> Result<EncoderState, ParquetError> {
        match asked.0.await {
            Ok(state) => Ok(state),
            // The task ended before answering: it failed on an earlier job.
            Err(_) => Err(self.failure().await),
        }
    }

    /// Finishes the file (footer, upload completed) once the queued jobs are done.
    pub async fn close(mut self) -> Result<FileStats, ParquetError> {
        self.send(Job::Close).await?;
        match join(&mut self.task).await? {
            Some(stats) => Ok(stats),
            None => Err(ParquetError::General(
                "the encoder ended without closing its file".into(),
            )),
        }
    }

    /// Stops encoding; the file is left unfinished (the caller aborts its upload).
    pub fn abandon(self) {
        self.task.abort();
    }

    async fn send(&mut self, job: Job) -> Result<(), ParquetError> {
        if self.jobs.send(job).await.is_err() {
            return Err(self.failure().await);
        }
        Ok(())
    }

    /// Why the task stopped taking jobs.
    async fn failure(&mut self) -> ParquetError {
        match join(&mut self.task).await {
            Err(e) => e,
            Ok(_) => ParquetError::General("the encoder stopped before its file was closed".into()),
        }
    }
}

async fn join(task: &mut JoinHandle<Outcome>) -> Outcome {
    match task.await {
        Ok(outcome) => outcome,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(ParquetError::General(format!("the encoder task: {e}"))),
    }
}

async fn run(
    mut writer: TableFileWriter<UploadWriter>,
    progress: Arc<UploadProgress>,
    mut jobs: mpsc::Receiver<Job>,
) -> Outcome {
    while let Some(job) = jobs.recv().await {
        match job {
            Job::Write(batch) => writer.write(&batch).await?,
            Job::FlushRowGroup => writer.flush_row_group().await?,
            Job::State(answer) => {
                // The caller may not want it any more: nothing to do then.
                let _ = answer.send(EncoderState {
                    buffered: writer.buffered_bytes(),
                    written: progress.bytes(),
                    column_chunks: writer.column_chunks(),
                });
            }
            Job::Close => return writer.close().await.map(Some),
        }
    }
    // Every sender dropped without a close: abandoned.
    Ok(None)
}
