//! A commitment computed on every core while the caller goes on producing bytes.
//!
//! ```text
//!  update(bytes) ─► first run: CommP, in line ─► then batches of runs ─► worker threads
//!                                                                         │ run_roots
//!  results, in order ◄── push_run_roots ◄────────────────────────────────┘
//! ```
//!
//! [`CommP::update`] parallelises one large call and waits for it; a writer that hands over a
//! CAR a section at a time (an importer: hash a leaf, write it, commit to it) needs the piece
//! hashed *beside* it instead. [`ParallelCommP`] copies the bytes into batches of whole runs,
//! which a pool of threads hashes while the caller returns to its own work; the roots are added
//! in order. Memory: a few batches per thread (a batch is 16 runs, about 4 MiB). A worker that
//! panics takes the commitment down with it ([`ParallelCommP::finish_with_prefix`] panics)
//! rather than leave a wrong one behind.

use std::{
    collections::BTreeMap,
    sync::mpsc::{Receiver, SyncSender, sync_channel},
    thread::JoinHandle,
};

use crate::commp::{CommP, Node, PieceError, PieceInfo, RUN_PAYLOAD, run_roots};

/// Runs per batch handed to a worker.
const BATCH_RUNS: usize = 16;
const BATCH: usize = BATCH_RUNS * RUN_PAYLOAD;

/// Streaming commP on a pool of threads.
#[derive(Debug)]
pub struct ParallelCommP {
    inner: CommP,
    /// Bytes of the batch being filled.
    batch: Vec<u8>,
    /// Batches sent, and the next whose roots go into `inner`.
    sent: u64,
    next: u64,
    /// Roots that came back ahead of their turn.
    early: BTreeMap<u64, Vec<Node>>,
    jobs: Option<SyncSender<(u64, Vec<u8>)>>,
    results: Receiver<(u64, Vec<Node>)>,
    workers: Vec<JoinHandle<()>>,
}

impl ParallelCommP {
    /// A hasher with one worker per core.
    pub fn new() -> Self {
        Self::with_threads(std::thread::available_parallelism().map_or(1, usize::from))
    }

    /// A hasher with `threads` workers (at least one).
    pub fn with_threads(threads: usize) -> Self {
        let threads = threads.max(1);
        let (jobs, inbox) = sync_channel::<(u64, Vec<u8>)>(threads * 2);
        let (done, results) = sync_channel::<(u64, Vec<Node>)>(threads * 4);
        let inbox = std::sync::Arc::new(std::sync::Mutex::new(inbox));
        let workers = (0..threads)
            .map(|_| {
                let inbox = std::sync::Arc::clone(&inbox);
                let done = done.clone();
                std::thread::spawn(move || {
                    loop {
                        let job = inbox.lock().map(|rx| rx.recv());
                        let Ok(Ok((seq, bytes))) = job else { return };
                        let roots = run_roots(&bytes).expect("batches are whole runs");
                        if done.send((seq, roots)).is_err() {
                            return;
                        }
                    }
                })
            })
            .collect();
        Self {
            inner: CommP::new(),
            batch: Vec::new(),
            sent: 0,
            next: 0,
            early: BTreeMap::new(),
            jobs: Some(jobs),
            results,
            workers,
        }
    }

    /// Payload bytes pushed so far.
    pub fn payload_size(&self) -> u64 {
        // Every batch sent and not yet in `inner` is a whole batch, whether its roots are still
        // being hashed or already back ahead of their turn (`early`): counted once.
        self.inner.payload_size() + (self.sent - self.next) * BATCH as u64 + self.batch.len() as u64
    }

    /// Adds payload bytes.
    pub fn update(&mut self, mut data: &[u8]) {
        // The first run goes through the accumulator in line (it holds the first quad aside).
        if self.sent == 0 && self.batch.is_empty() && !self.inner.at_run_boundary() {
            let short = RUN_PAYLOAD as u64 - self.inner.payload_size().min(RUN_PAYLOAD as u64);
            let take = (short as usize).min(data.len());
            self.inner.update(&data[..take]);
            data = &data[take..];
            if data.is_empty() {
                return;
            }
        }
        while !data.is_empty() {
            let take = (BATCH - self.batch.len()).min(data.len());
            self.batch.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.batch.len() == BATCH {
                let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
                self.send(batch);
            }
        }
        self.collect(false);
    }

    fn send(&mut self, batch: Vec<u8>) {
        let jobs = self.jobs.clone().expect("the pool lives until finish");
        // A full queue means the workers are behind: take finished roots while waiting.
        let mut job = (self.sent, batch);
        loop {
            match jobs.try_send(job) {
                Ok(()) => break,
                Err(std::sync::mpsc::TrySendError::Full(back)) => {
                    job = back;
                    self.collect(true);
                }
                Err(std::sync::mpsc::TrySendError::Disconnected(_)) => {
                    panic!("a piece hashing thread panicked")
                }
            }
        }
        self.sent += 1;
    }

    /// Adds the roots that are back, in order; with `wait`, blocks for at least one.
    fn collect(&mut self, wait: bool) {
        let mut waited = !wait;
        loop {
            let got = if waited { self.results.try_recv().ok() } else { self.results.recv().ok() };
            waited = true;
            let Some((seq, roots)) = got else { break };
            self.early.insert(seq, roots);
        }
        while let Some(roots) = self.early.remove(&self.next) {
            self.inner.push_run_roots(&roots).expect("batches follow the first run, whole");
            self.next += 1;
        }
    }

    /// The commitment of everything pushed, with its first `prefix.len()` bytes (at most 127)
    /// replaced by `prefix` (see [`CommP::finish_with_prefix`]).
    ///
    /// # Panics
    /// If a hashing thread panicked.
    pub fn finish_with_prefix(mut self, prefix: &[u8]) -> Result<PieceInfo, PieceError> {
        while self.next < self.sent {
            let (seq, roots) = self.results.recv().expect("a piece hashing thread panicked");
            self.early.insert(seq, roots);
            self.collect(false);
        }
        drop(self.jobs.take());
        for worker in self.workers.drain(..) {
            worker.join().expect("a piece hashing thread panicked");
        }
        let rest = std::mem::take(&mut self.batch);
        self.inner.update(&rest);
        let inner = std::mem::take(&mut self.inner);
        inner.finish_with_prefix(prefix)
    }

    /// The commitment of everything pushed.
    pub fn finish(self) -> Result<PieceInfo, PieceError> {
        self.finish_with_prefix(&[])
    }
}

impl Default for ParallelCommP {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for ParallelCommP {
    fn drop(&mut self) {
        drop(self.jobs.take());
        while self.results.try_recv().is_ok() {}
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_commitment_whatever_the_pieces() {
        let mut x = 7u64;
        let data: Vec<u8> = (0..(BATCH * 3 + RUN_PAYLOAD * 2 + 1234))
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        for len in [
            0,
            1,
            127,
            RUN_PAYLOAD - 1,
            RUN_PAYLOAD,
            RUN_PAYLOAD + 1,
            BATCH + RUN_PAYLOAD,
            data.len(),
        ] {
            let expected = crate::commp::commp(&data[..len]).unwrap();
            for step in [1000, 65_536, 1 << 20, len.max(1)] {
                let mut p = ParallelCommP::with_threads(3);
                for chunk in data[..len].chunks(step) {
                    p.update(chunk);
                }
                assert_eq!(p.payload_size(), len as u64);
                assert_eq!(p.finish().unwrap(), expected, "{len} bytes in steps of {step}");
            }
        }
    }

    #[test]
    fn a_prefix_replaces_the_first_bytes() {
        let data = vec![9u8; RUN_PAYLOAD * 3];
        let mut patched = data.clone();
        patched[..10].copy_from_slice(&[1; 10]);
        let mut p = ParallelCommP::with_threads(2);
        p.update(&data);
        assert_eq!(p.finish_with_prefix(&[1; 10]).unwrap(), crate::commp::commp(&patched).unwrap());
    }
}
