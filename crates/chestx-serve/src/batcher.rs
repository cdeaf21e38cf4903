//! The model's queue: requests wait in a bounded queue and one worker thread takes them in batches.
//!
//! A network scores a batch of eight films in much less than eight times one film's time, and on a
//! CPU it already uses every core for one film, so requests are never run side by side: the worker
//! takes whatever has queued while it was busy (up to `max_batch`) and scores it in one pass. The
//! queue is bounded, so memory is too: when it is full a request is refused at once
//! ([`Busy`], a 503 with Retry-After) rather than held.
//!
//! The worker owns the model (it is built inside the thread, so it need not be `Send`) and survives a
//! panic in it: that batch is answered with an error and the next batch runs.

use std::panic::{catch_unwind, AssertUnwindSafe};
use tokio::sync::{mpsc, oneshot};

/// What the worker answers for one input.
pub type Reply<O> = Result<O, String>;

struct Job<I, O> {
    input: I,
    reply: oneshot::Sender<Reply<O>>,
}

/// The queue is full: come back later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

/// The sending end of the model's queue; cheap to clone into every request.
pub struct Batcher<I, O> {
    tx: mpsc::Sender<Job<I, O>>,
    capacity: usize,
}

impl<I, O> Clone for Batcher<I, O> {
    fn clone(&self) -> Self {
        Batcher {
            tx: self.tx.clone(),
            capacity: self.capacity,
        }
    }
}

/// Called by the worker with each batch's size, before it is scored.
pub type BatchObserver = Box<dyn Fn(usize) + Send>;

impl<I: Send + 'static, O: Send + 'static> Batcher<I, O> {
    /// Start the worker. `make` runs on the worker thread and returns the model's batch function
    /// (inputs in, one reply per input out, in order) and whatever the caller needs to know about the
    /// model (`T`); its error is returned here and no worker is left behind.
    pub fn start<T, F, M>(
        queue: usize,
        max_batch: usize,
        observe: BatchObserver,
        make: M,
    ) -> Result<(Self, T), String>
    where
        T: Send + 'static,
        F: FnMut(Vec<I>) -> Vec<Reply<O>> + 'static,
        M: FnOnce() -> Result<(F, T), String> + Send + 'static,
    {
        let (queue, max_batch) = (queue.max(1), max_batch.max(1));
        let (tx, rx) = mpsc::channel::<Job<I, O>>(queue);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("chestx-model".into())
            .spawn(move || match make() {
                Ok((score, info)) => {
                    let _ = ready_tx.send(Ok(info));
                    work(rx, max_batch, score, observe);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            })
            .map_err(|e| format!("cannot start the model thread: {e}"))?;
        let info = ready_rx
            .recv()
            .map_err(|_| "the model thread ended while loading the model".to_string())??;
        Ok((
            Batcher {
                tx,
                capacity: queue,
            },
            info,
        ))
    }

    /// Queue one input; the receiver gets its reply. Refused at once when the queue is full.
    pub fn submit(&self, input: I) -> Result<oneshot::Receiver<Reply<O>>, Busy> {
        let (reply, rx) = oneshot::channel();
        self.tx.try_send(Job { input, reply }).map_err(|_| Busy)?;
        Ok(rx)
    }

    /// Inputs waiting for the model now.
    pub fn queued(&self) -> usize {
        self.capacity - self.tx.capacity()
    }

    /// The queue's bound.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

fn work<I, O, F>(
    mut rx: mpsc::Receiver<Job<I, O>>,
    max_batch: usize,
    mut score: F,
    observe: BatchObserver,
) where
    F: FnMut(Vec<I>) -> Vec<Reply<O>>,
{
    while let Some(first) = rx.blocking_recv() {
        let mut jobs = vec![first];
        while jobs.len() < max_batch {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        // A client that gave up (timed out, disconnected) is not scored.
        jobs.retain(|j| !j.reply.is_closed());
        if jobs.is_empty() {
            continue;
        }
        observe(jobs.len());
        let (inputs, replies): (Vec<I>, Vec<_>) =
            jobs.into_iter().map(|j| (j.input, j.reply)).unzip();
        let n = replies.len();
        let outs = match catch_unwind(AssertUnwindSafe(|| score(inputs))) {
            Ok(outs) if outs.len() == n => outs,
            Ok(outs) => (0..n)
                .map(|_| Err(format!("the model answered {} of {n} inputs", outs.len())))
                .collect(),
            Err(p) => {
                let why = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "unknown panic".into());
                (0..n)
                    .map(|_| Err(format!("the model failed: {why}")))
                    .collect()
            }
        };
        for (reply, out) in replies.into_iter().zip(outs) {
            let _ = reply.send(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier, Mutex};

    #[test]
    fn batches_what_queued_while_busy_and_refuses_when_full() {
        // The model signals that it holds the first input and waits on a gate; meanwhile three more
        // queue (capacity 3) and a fifth is refused. Released, it takes the three in one batch.
        let (entered, gate) = (Arc::new(Barrier::new(2)), Arc::new(Barrier::new(2)));
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let (e, g, s) = (entered.clone(), gate.clone(), sizes.clone());
        let (b, ()) = Batcher::<u32, u32>::start(
            3,
            8,
            Box::new(move |n| s.lock().unwrap().push(n)),
            move || {
                let mut first = true;
                let f = move |xs: Vec<u32>| {
                    if std::mem::take(&mut first) {
                        e.wait();
                        g.wait();
                    }
                    xs.into_iter().map(|x| Ok(x * 10)).collect()
                };
                Ok((f, ()))
            },
        )
        .unwrap();
        let r0 = b.submit(0).unwrap();
        entered.wait();
        let rest: Vec<_> = (1..=3).map(|i| b.submit(i).unwrap()).collect();
        assert_eq!(b.queued(), 3);
        assert_eq!(b.submit(4).err(), Some(Busy), "a full queue refuses");
        gate.wait();
        assert_eq!(r0.blocking_recv().unwrap(), Ok(0));
        for (i, r) in rest.into_iter().enumerate() {
            assert_eq!(r.blocking_recv().unwrap(), Ok(10 * (i as u32 + 1)));
        }
        assert_eq!(*sizes.lock().unwrap(), vec![1, 3]);
    }

    #[test]
    fn a_panicking_model_answers_with_an_error_and_keeps_serving() {
        let (b, ()) = Batcher::<i32, i32>::start(4, 4, Box::new(|_| {}), || {
            let f = |xs: Vec<i32>| {
                assert!(xs[0] >= 0, "negative input");
                xs.into_iter().map(Ok).collect()
            };
            Ok((f, ()))
        })
        .unwrap();
        let err = b.submit(-1).unwrap().blocking_recv().unwrap().unwrap_err();
        assert!(err.contains("negative input"), "{err}");
        assert_eq!(b.submit(5).unwrap().blocking_recv().unwrap(), Ok(5));
    }

    #[test]
    fn a_model_that_cannot_load_is_an_error_at_start() {
        let r = Batcher::<u8, u8>::start(1, 1, Box::new(|_| {}), || {
            Err::<(fn(Vec<u8>) -> Vec<Reply<u8>>, ()), _>("no such run".to_string())
        });
        assert_eq!(r.err().as_deref(), Some("no such run"));
    }
}
