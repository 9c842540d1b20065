//! The server's side of the render workers ([`super::worker`]): a few long-lived worker
//! processes that serve render jobs from one queue, and one-off workers for trial renders.
//!
//! Each slot has a thread that owns its child: it writes a job, waits for the reply at most
//! the job's budget, and on time-out kills the child (SIGKILL: the work really stops) and
//! starts a fresh one for the next job. A second thread per child only reads replies, so the
//! wait is a channel receive with a deadline and needs no `poll(2)`. Jobs carry their own
//! completion callback: a render finishes (and is cached) even when the client that asked
//! for it went away.

use std::io::BufReader;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::worker::{read_frame, write_frame, Reply, Request, MEMORY_ENV, WORKER_ARG};
use super::RenderConfig;

/// A template set as the workers load it, numbered by the renderer's generation.
#[derive(Debug)]
pub struct TemplateSet {
    pub generation: u64,
    pub sources: Vec<(String, String)>,
}

/// Why a job got no reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobError {
    /// The worker ran past the budget and was killed.
    OverBudget(Duration),
    /// The worker died (out of memory, stack overflow) or broke the protocol.
    Died(String),
    /// No worker could be started; not the template's fault, so not remembered.
    Unavailable(String),
    /// The worker answered with a refusal (a template error).
    Refused(Vec<String>),
}

type Done = Box<dyn FnOnce(Result<String, JobError>) + Send>;

/// One render for a worker.
pub struct Job {
    pub set: Arc<TemplateSet>,
    pub request: Request,
    pub done: Done,
}

/// Counters for `/metrics`.
#[derive(Default, Debug)]
pub struct PoolStats {
    pub over_budget: AtomicU64,
    pub worker_starts: AtomicU64,
    pub worker_deaths: AtomicU64,
}

/// How to start a worker: which executable, with which limits.
#[derive(Clone, Debug)]
pub struct Launcher {
    pub exe: PathBuf,
    pub memory_bytes: u64,
}

impl Launcher {
    /// This very executable (`/proc/self/exe` on Linux: still the running binary after a
    /// package upgrade replaced the file).
    pub fn this_executable(cfg: &RenderConfig) -> Launcher {
        let exe = if cfg!(target_os = "linux") {
            PathBuf::from("/proc/self/exe")
        } else {
            std::env::current_exe().unwrap_or_else(|_| PathBuf::from("ironpxe"))
        };
        Launcher {
            exe,
            memory_bytes: cfg.worker_memory_mib << 20,
        }
    }

    fn start(&self) -> std::io::Result<Worker> {
        let mut child = Command::new(&self.exe)
            .arg(WORKER_ARG)
            .env(MEMORY_ENV, self.memory_bytes.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let (stdin, stdout) = match (child.stdin.take(), child.stdout.take()) {
            (Some(i), Some(o)) => (i, o),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(std::io::Error::other("worker pipes missing"));
            }
        };
        let (tx, replies) = mpsc::channel();
        std::thread::Builder::new()
            .name("render reply".into())
            .spawn(move || {
                let mut r = BufReader::new(stdout);
                while let Ok(Some(reply)) = read_frame::<_, Reply>(&mut r) {
                    if tx.send(reply).is_err() {
                        break;
                    }
                }
            })?;
        Ok(Worker {
            child,
            stdin,
            replies,
            loaded: None,
        })
    }
}

/// A running worker process.
struct Worker {
    child: Child,
    stdin: ChildStdin,
    replies: Receiver<Reply>,
    /// Generation of the template set it holds.
    loaded: Option<u64>,
}

impl Worker {
    /// Sends one request and waits for its reply at most `budget`.
    fn ask(&mut self, req: &Request, budget: Duration) -> Result<Reply, JobError> {
        write_frame(&mut self.stdin, req).map_err(|e| JobError::Died(e.to_string()))?;
        match self.replies.recv_timeout(budget) {
            Ok(r) => Ok(r),
            Err(RecvTimeoutError::Timeout) => Err(JobError::OverBudget(budget)),
            Err(RecvTimeoutError::Disconnected) => Err(JobError::Died(self.exit_status())),
        }
    }

    fn exit_status(&mut self) -> String {
        match self.child.wait() {
            Ok(s) => format!("render worker ended ({s}): out of memory or stack?"),
            Err(e) => format!("render worker lost: {e}"),
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Killed, not asked: it may be in the middle of a runaway render.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The worker pool.
pub struct Pool {
    jobs: Mutex<Option<SyncSender<Job>>>,
    launcher: Launcher,
    pub stats: Arc<PoolStats>,
    budget: Duration,
    trial_budget: Duration,
}

/// Jobs waiting for a worker before `submit` answers "busy" (a storm of cache misses).
const QUEUE_MAX: usize = 4096;

impl Pool {
    /// Starts `cfg.workers` slots; each starts its worker process with its first job (and
    /// again after one was killed), so an idle server runs none.
    pub fn start(cfg: &RenderConfig, launcher: Launcher) -> Pool {
        let (tx, rx) = mpsc::sync_channel::<Job>(QUEUE_MAX);
        let rx = Arc::new(Mutex::new(rx));
        let stats = Arc::new(PoolStats::default());
        let budget = Duration::from_millis(cfg.budget_ms.max(1));
        for i in 0..cfg.workers.max(1) {
            let (rx, launcher, stats) = (rx.clone(), launcher.clone(), stats.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("render{i}"))
                .spawn(move || slot(&rx, &launcher, &stats, budget));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a render slot");
            }
        }
        Pool {
            jobs: Mutex::new(Some(tx)),
            launcher,
            stats,
            budget,
            trial_budget: Duration::from_millis(cfg.trial_budget_ms.max(1)),
        }
    }

    pub fn budget(&self) -> Duration {
        self.budget
    }

    /// Queues a job; its callback runs on a slot thread, or here when the queue is full.
    pub fn submit(&self, job: Job) {
        let tx = self.jobs.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(tx) = tx else {
            (job.done)(Err(JobError::Unavailable("renderer stopped".into())));
            return;
        };
        if let Err(e) = tx.try_send(job) {
            let job = match e {
                mpsc::TrySendError::Full(j) | mpsc::TrySendError::Disconnected(j) => j,
            };
            (job.done)(Err(JobError::Unavailable(
                "every render worker is busy".into(),
            )));
        }
    }

    /// Parses, checks and trial-renders a candidate set in a worker of its own, killed when
    /// done or at the trial budget.
    pub fn trial(
        &self,
        sources: Vec<(String, String)>,
        ramdisk_params: &str,
    ) -> Result<(), Vec<String>> {
        let mut w = self
            .launcher
            .start()
            .map_err(|e| vec![format!("cannot start a render worker: {e}")])?;
        self.stats.worker_starts.fetch_add(1, Relaxed);
        let req = Request::Trial {
            sources,
            ramdisk_params: ramdisk_params.to_owned(),
        };
        let reply = w.ask(&req, self.trial_budget);
        drop(w); // killed: a trial worker serves one request
        match reply {
            Ok(Reply::Ok) => Ok(()),
            Ok(Reply::Refused(errs)) => Err(errs),
            Ok(Reply::Rendered(_)) => Err(vec!["render worker answered out of turn".into()]),
            Err(JobError::OverBudget(d)) => {
                self.stats.over_budget.fetch_add(1, Relaxed);
                Err(vec![format!(
                    "trial render ran longer than {} ms and was stopped: a loop too large? (the templates were refused)",
                    d.as_millis()
                )])
            }
            Err(e) => Err(vec![format!("trial render failed: {}", describe(&e))]),
        }
    }

    /// Stops taking jobs; slot threads end and kill their workers.
    pub fn stop(&self) {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Human text for a job error.
pub fn describe(e: &JobError) -> String {
    match e {
        JobError::OverBudget(d) => format!(
            "render ran longer than its budget of {} ms and was stopped",
            d.as_millis()
        ),
        JobError::Died(why) | JobError::Unavailable(why) => why.clone(),
        JobError::Refused(errs) => errs.join("; "),
    }
}

/// One slot: takes jobs from the shared queue and runs each in its worker.
fn slot(rx: &Mutex<Receiver<Job>>, launcher: &Launcher, stats: &PoolStats, budget: Duration) {
    let mut worker: Option<Worker> = None;
    loop {
        let job = match rx.lock().unwrap_or_else(|p| p.into_inner()).recv() {
            Ok(j) => j,
            Err(_) => return, // the pool stopped
        };
        if worker.is_none() {
            match launcher.start() {
                Ok(w) => {
                    stats.worker_starts.fetch_add(1, Relaxed);
                    worker = Some(w);
                }
                Err(e) => {
                    (job.done)(Err(JobError::Unavailable(format!(
                        "cannot start a render worker: {e}"
                    ))));
                    continue;
                }
            }
        }
        let Some(w) = worker.as_mut() else { continue };
        let result = run_job(w, &job, budget);
        // A worker stopped at the budget or dead in the render is replaced for the next job.
        let counter = match &result {
            Err(JobError::OverBudget(_)) => Some(&stats.over_budget),
            Err(JobError::Died(_)) => Some(&stats.worker_deaths),
            _ => None,
        };
        if let Some(c) = counter {
            c.fetch_add(1, Relaxed);
            worker = None; // dropping a worker kills it
        }
        (job.done)(result);
    }
}

/// Loads the job's template set if the worker holds another, then renders.
fn run_job(w: &mut Worker, job: &Job, budget: Duration) -> Result<String, JobError> {
    if w.loaded != Some(job.set.generation) {
        let load = Request::Load {
            sources: job.set.sources.clone(),
        };
        // Loading an approved set is parsing only; the render budget bounds it too.
        match w.ask(&load, budget)? {
            Reply::Ok => w.loaded = Some(job.set.generation),
            Reply::Refused(errs) => return Err(JobError::Refused(errs)),
            Reply::Rendered(_) => return Err(JobError::Died("protocol error".into())),
        }
    }
    match w.ask(&job.request, budget)? {
        Reply::Rendered(body) => Ok(body),
        Reply::Refused(errs) => Err(JobError::Refused(errs)),
        Reply::Ok => Err(JobError::Died("protocol error".into())),
    }
}
