//! The scheduler's behaviour on tokio's paused clock, with an in-test loader and runner
//! that count loads, trims and drops (real plugins are exercised end to end elsewhere).

use super::*;
use hearth_sdk::{ErrorKind, FinishReason, SinkControl};
use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Mutex,
    },
};
use tokio::time::advance;

const MIN: Duration = Duration::from_secs(60);
const SEC: Duration = Duration::from_secs(1);

/// How a test runner's `trim` behaves.
#[derive(Clone, Copy)]
enum TrimBehaviour {
    Succeeds,
    Fails,
    Panics,
}

#[derive(Default)]
struct Counts {
    loads: AtomicUsize,
    trims: AtomicUsize,
    drops: AtomicUsize,
}

impl Counts {
    fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }
    fn trims(&self) -> usize {
        self.trims.load(Ordering::SeqCst)
    }
    fn drops(&self) -> usize {
        self.drops.load(Ordering::SeqCst)
    }
}

struct TestRunner {
    counts: Arc<Counts>,
    bytes: u64,
    trim: TrimBehaviour,
}

impl Runner for TestRunner {
    fn generate(
        &self,
        _: &GenerateRequest,
        sink: &mut dyn TokenSink,
    ) -> Result<GenerateStats, PluginError> {
        let finish_reason = if sink.on_token("hi") == SinkControl::Stop {
            FinishReason::Cancelled
        } else {
            FinishReason::Stop
        };
        Ok(GenerateStats {
            prompt_tokens: 1,
            completion_tokens: 1,
            prompt_ms: 0.0,
            decode_ms: 0.0,
            finish_reason,
        })
    }

    fn trim(&self) -> Result<(), PluginError> {
        self.counts.trims.fetch_add(1, Ordering::SeqCst);
        match self.trim {
            TrimBehaviour::Succeeds => Ok(()),
            TrimBehaviour::Fails => Err(PluginError::internal("trim failed")),
            TrimBehaviour::Panics => panic!("trim panicked"),
        }
    }

    fn memory(&self) -> MemoryUsage {
        MemoryUsage { host_bytes: self.bytes, device_bytes: 0 }
    }
}

impl Drop for TestRunner {
    fn drop(&mut self) {
        self.counts.drops.fetch_add(1, Ordering::SeqCst);
    }
}

/// Loads instantly, so tests stay deterministic on the paused clock. Counts are per
/// model id; `failures` makes the next loads of a model fail (or panic).
#[derive(Default)]
struct TestLoader {
    counts: Mutex<HashMap<String, Arc<Counts>>>,
    failures: Mutex<HashMap<String, (usize, bool)>>,
    trim: Mutex<Option<TrimBehaviour>>,
}

impl TestLoader {
    fn counts(&self, model: &str) -> Arc<Counts> {
        self.counts.lock().unwrap().entry(model.to_owned()).or_default().clone()
    }

    fn fail_next(&self, model: &str, times: usize, panic: bool) {
        self.failures.lock().unwrap().insert(model.to_owned(), (times, panic));
    }
}

impl Loader for TestLoader {
    fn load(&self, spec: &LoadSpec) -> Result<Arc<dyn Runner>, PluginError> {
        let counts = self.counts(&spec.key.model_id);
        counts.loads.fetch_add(1, Ordering::SeqCst);
        // Decided before panicking, so the panic does not poison the lock.
        let failure = match self.failures.lock().unwrap().get_mut(&spec.key.model_id) {
            Some((times, panic)) if *times > 0 => {
                *times -= 1;
                Some(*panic)
            }
            _ => None,
        };
        match failure {
            Some(true) => panic!("loader panicked"),
            Some(false) => return Err(PluginError::out_of_memory("no room")),
            None => {}
        }
        let trim = self.trim.lock().unwrap().unwrap_or(TrimBehaviour::Succeeds);
        Ok(Arc::new(TestRunner { counts, bytes: spec.estimated_bytes, trim }))
    }
}

fn key(model: &str) -> ModelKey {
    ModelKey {
        backend: "test".into(),
        model_id: model.into(),
        path: PathBuf::from(format!("/models/{model}.gguf")),
        plugin_generation: 1,
        definition_revision: 0,
        file: Default::default(),
    }
}

fn spec(model: &str, bytes: u64) -> LoadSpec {
    LoadSpec {
        key: key(model),
        request: LoadRequest {
            model_id: model.into(),
            paths: vec![format!("/models/{model}.gguf").as_str().into()].into(),
            format: "gguf".into(),
            context_size: 0,
            threads: 0,
            device: None.into(),
            ..Default::default()
        },
        idle: None,
        estimated_bytes: bytes,
    }
}

fn policy(max_resident_models: usize, memory_budget_bytes: Option<u64>) -> SchedulerPolicy {
    SchedulerPolicy { max_resident_models, memory_budget_bytes, ..SchedulerPolicy::default() }
}

fn scheduler(policy: SchedulerPolicy) -> (Scheduler, Arc<TestLoader>) {
    let loader = Arc::new(TestLoader::default());
    (Scheduler::new(loader.clone(), policy), loader)
}

fn state(scheduler: &Scheduler, model: &str) -> Option<ModelState> {
    scheduler.snapshot().into_iter().find(|s| s.key.model_id == model).map(|s| s.state)
}

/// Let spawned tasks and blocking work (trims, drops) finish. Blocking work holds the
/// paused clock still, so each 1 ms sleep returns only once the runtime is idle again.
async fn settle() {
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn acquire(scheduler: &Scheduler, model: &str) -> RunnerRef {
    scheduler.acquire(spec(model, 100), KeepAlive::Default).await.unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_ready_model_is_trimmed_at_two_minutes_unloaded_at_five_and_reloaded_by_the_next_request()
{
    let (scheduler, loader) = scheduler(SchedulerPolicy::default());
    let held = acquire(&scheduler, "a").await;
    assert_eq!(state(&scheduler, "a"), Some(ModelState::Busy));
    drop(held);
    settle().await;
    let counts = loader.counts("a");
    assert_eq!(state(&scheduler, "a"), Some(ModelState::Ready));

    advance(2 * MIN - SEC).await;
    settle().await;
    assert_eq!((state(&scheduler, "a"), counts.trims()), (Some(ModelState::Ready), 0));
    advance(SEC).await;
    settle().await;
    assert_eq!((state(&scheduler, "a"), counts.trims()), (Some(ModelState::Trimmed), 1));

    advance(3 * MIN - SEC).await;
    settle().await;
    assert_eq!((state(&scheduler, "a"), counts.drops()), (Some(ModelState::Trimmed), 0));
    advance(SEC).await;
    settle().await;
    assert_eq!((state(&scheduler, "a"), counts.drops()), (None, 1));

    let again = acquire(&scheduler, "a").await;
    assert_eq!((counts.loads(), state(&scheduler, "a")), (2, Some(ModelState::Busy)));
    drop(again);
}

#[tokio::test(start_paused = true)]
async fn a_request_for_a_trimmed_model_reuses_it_without_reloading() {
    let (scheduler, loader) = scheduler(SchedulerPolicy::default());
    drop(acquire(&scheduler, "a").await);
    advance(2 * MIN).await;
    settle().await;
    assert_eq!(state(&scheduler, "a"), Some(ModelState::Trimmed));

    let held = acquire(&scheduler, "a").await;
    assert_eq!(state(&scheduler, "a"), Some(ModelState::Busy));
    drop(held);
    settle().await;
    assert_eq!(state(&scheduler, "a"), Some(ModelState::Ready));
    assert_eq!((loader.counts("a").loads(), loader.counts("a").drops()), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn no_timer_fires_while_a_request_is_in_flight() {
    let (scheduler, loader) = scheduler(SchedulerPolicy::default());
    let held = acquire(&scheduler, "a").await;
    for _ in 0..10 {
        advance(MIN).await;
        settle().await;
    }
    let counts = loader.counts("a");
    assert_eq!(
        (state(&scheduler, "a"), counts.trims(), counts.drops()),
        (Some(ModelState::Busy), 0, 0)
    );
    let snapshot = &scheduler.snapshot()[0];
    assert_eq!((snapshot.trim_at_ms, snapshot.unload_at_ms), (None, None));
    drop(held);
}

#[tokio::test(start_paused = true)]
async fn timers_restart_when_the_last_request_ends() {
    let (scheduler, loader) = scheduler(SchedulerPolicy::default());
    let first = acquire(&scheduler, "a").await;
    let second = acquire(&scheduler, "a").await;
    drop(first);
    advance(3 * MIN).await;
    settle().await;
    assert_eq!(state(&scheduler, "a"), Some(ModelState::Busy), "one request is still in flight");

    drop(second);
    advance(90 * SEC).await;
    settle().await;
    // A request in the middle of the idle period ends it; the next one starts from zero.
    drop(acquire(&scheduler, "a").await);
    advance(2 * MIN - SEC).await;
    settle().await;
    assert_eq!((state(&scheduler, "a"), loader.counts("a").trims()), (Some(ModelState::Ready), 0));
    advance(SEC).await;
    settle().await;
    assert_eq!(state(&scheduler, "a"), Some(ModelState::Trimmed));
    advance(3 * MIN).await;
    settle().await;
    assert_eq!((state(&scheduler, "a"), loader.counts("a").drops()), (None, 1));
}

#[tokio::test(start_paused = true)]
async fn two_concurrent_first_requests_share_one_load() {
    let (scheduler, loader) = scheduler(SchedulerPolicy::default());
    let (first, second) = tokio::join!(acquire(&scheduler, "a"), acquire(&scheduler, "a"));
    assert!(Arc::ptr_eq(first.runner(), second.runner()));
    assert_eq!(loader.counts("a").loads(), 1);
    assert_eq!(scheduler.snapshot()[0].refs, 2);
}

#[tokio::test(start_paused = true)]
async fn a_failed_load_is_reported_to_every_waiter_and_retried_by_the_next_request() {
    let (scheduler, loader) = scheduler(SchedulerPolicy::default());
    loader.fail_next("a", 1, false);
    let (first, second) = tokio::join!(
        scheduler.acquire(spec("a", 100), KeepAlive::Default),
        scheduler.acquire(spec("a", 100), KeepAlive::Default)
    );
    for result in [first, second] {
        match result {
            Err(SchedulerError::Load { model, source }) => {
                assert_eq!((model, source.kind), (key("a"), ErrorKind::OutOfMemory));
            }
            other => panic!("expected a load error, got {other:?}"),
        }
    }
    assert_eq!((loader.counts("a").loads(), scheduler.snapshot().len()), (1, 0));

    let runner = acquire(&scheduler, "a").await;
    assert_eq!(loader.counts("a").loads(), 2);
    drop(runner);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_loader_is_reported_as_a_panic_and_retried() {
    let (scheduler, loader) = scheduler(SchedulerPolicy::default());
    loader.fail_next("a", 1, true);
    match scheduler.acquire(spec("a", 100), KeepAlive::Default).await {
        Err(SchedulerError::Load { source, .. }) => assert_eq!(source.kind, ErrorKind::Panicked),
        other => panic!("expected a load error, got {other:?}"),
    }
    drop(acquire(&scheduler, "a").await);
    assert_eq!(loader.counts("a").loads(), 2);
}

#[tokio::test(start_paused = true)]
async fn the_least_recently_used_idle_model_is_evicted_at_max_resident_models() {
    let (scheduler, loader) = scheduler(policy(1, None));
    drop(acquire(&scheduler, "a").await);
    drop(acquire(&scheduler, "b").await);
    assert_eq!(loader.counts("a").drops(), 1);
    let models: Vec<String> = scheduler.snapshot().into_iter().map(|s| s.key.model_id).collect();
    assert_eq!(models, ["b"]);

    // With room for two, the one used longest ago goes.
    let (scheduler, loader) = self::scheduler(policy(2, None));
    drop(acquire(&scheduler, "a").await);
    advance(SEC).await;
    drop(acquire(&scheduler, "b").await);
    advance(SEC).await;
    drop(acquire(&scheduler, "a").await);
    advance(SEC).await;
    drop(acquire(&scheduler, "c").await);
    assert_eq!((loader.counts("a").drops(), loader.counts("b").drops()), (0, 1));
}

#[tokio::test(start_paused = true)]
async fn the_memory_budget_evicts_idle_models_until_the_new_one_fits() {
    let (scheduler, loader) = scheduler(policy(0, Some(1000)));
    for model in ["a", "b", "c"] {
        drop(scheduler.acquire(spec(model, 300), KeepAlive::Default).await.unwrap());
        advance(SEC).await;
    }
    assert_eq!(scheduler.snapshot().len(), 3, "900 of 1000 bytes fit");

    // 900 + 600 > 1000: a (300) is not enough, b must go too.
    drop(scheduler.acquire(spec("d", 600), KeepAlive::Default).await.unwrap());
    let models: Vec<String> = scheduler.snapshot().into_iter().map(|s| s.key.model_id).collect();
    assert_eq!(models, ["c", "d"]);
    assert_eq!(
        (loader.counts("a").drops(), loader.counts("b").drops(), loader.counts("c").drops()),
        (1, 1, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn an_acquire_waits_for_a_busy_model_to_become_idle_before_evicting_it() {
    let (scheduler, loader) = scheduler(policy(1, None));
    let held = acquire(&scheduler, "a").await;
    let waiting = tokio::spawn({
        let scheduler = scheduler.clone();
        async move { acquire(&scheduler, "b").await }
    });
    advance(MIN).await;
    settle().await;
    assert!(!waiting.is_finished());
    assert_eq!(loader.counts("b").loads(), 0);

    drop(held);
    let b = waiting.await.unwrap();
    assert_eq!((loader.counts("a").drops(), b.key().model_id.as_str()), (1, "b"));
}

#[tokio::test(start_paused = true)]
async fn an_acquire_gives_up_after_evict_wait_when_every_model_stays_busy() {
    let policy = SchedulerPolicy { evict_wait: 30 * SEC, ..policy(1, None) };
    let (scheduler, _loader) = scheduler(policy);
    let held = acquire(&scheduler, "a").await;
    match scheduler.acquire(spec("b", 100), KeepAlive::Default).await {
        Err(SchedulerError::Busy { model, waited }) => {
            assert_eq!((model, waited), (key("b"), 30 * SEC));
        }
        other => panic!("expected Busy, got {other:?}"),
    }
    assert_eq!(state(&scheduler, "a"), Some(ModelState::Busy));
    drop(held);
}

#[tokio::test(start_paused = true)]
async fn keep_alive_zero_unloads_right_after_release() {
    let (scheduler, loader) = scheduler(SchedulerPolicy::default());
    let held = scheduler.acquire(spec("a", 100), KeepAlive::For(Duration::ZERO)).await.unwrap();
    settle().await;
    assert_eq!(state(&scheduler, "a"), Some(ModelState::Busy));
    drop(held);
    settle().await;
    assert_eq!(
        (state(&scheduler, "a"), loader.counts("a").trims(), loader.counts("a").drops()),
        (None, 0, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn keep_alive_forever_trims_but_never_unloads() {
    let (scheduler, loader) = scheduler(SchedulerPolicy::default());
    drop(scheduler.acquire(spec("a", 100), KeepAlive::Forever).await.unwrap());
    advance(60 * MIN).await;
    settle().await;
    assert_eq!(
        (state(&scheduler, "a"), loader.counts("a").drops()),
        (Some(ModelState::Trimmed), 0)
    );
}

#[tokio::test(start_paused = true)]
async fn per_model_idle_overrides_set_that_models_timeouts() {
    let (scheduler, loader) = scheduler(SchedulerPolicy::default());
    let custom =
        LoadSpec { idle: Some(IdleTimeouts { soft: 10 * SEC, hard: 30 * SEC }), ..spec("a", 100) };
    drop(scheduler.acquire(custom, KeepAlive::Default).await.unwrap());
    drop(acquire(&scheduler, "b").await);

    let snapshot = scheduler.snapshot();
    let a = &snapshot[0];
    assert_eq!(a.trim_at_ms.unwrap() - a.last_used_ms, 10_000);
    assert_eq!(a.unload_at_ms.unwrap() - a.last_used_ms, 30_000);

    advance(10 * SEC).await;
    settle().await;
    assert_eq!(state(&scheduler, "a"), Some(ModelState::Trimmed));
    advance(20 * SEC).await;
    settle().await;
    assert_eq!((state(&scheduler, "a"), loader.counts("a").drops()), (None, 1));
    assert_eq!(state(&scheduler, "b"), Some(ModelState::Ready), "the default applies to b");
}

#[tokio::test(start_paused = true)]
async fn a_failing_or_panicking_trim_does_not_wedge_the_scheduler() {
    for behaviour in [TrimBehaviour::Fails, TrimBehaviour::Panics] {
        let (scheduler, loader) = scheduler(SchedulerPolicy::default());
        *loader.trim.lock().unwrap() = Some(behaviour);
        drop(acquire(&scheduler, "a").await);
        advance(2 * MIN).await;
        settle().await;
        assert_eq!(
            (state(&scheduler, "a"), loader.counts("a").trims()),
            (Some(ModelState::Ready), 1)
        );

        // Still usable, and still unloaded on time.
        drop(acquire(&scheduler, "a").await);
        advance(5 * MIN).await;
        settle().await;
        assert_eq!((state(&scheduler, "a"), loader.counts("a").drops()), (None, 1));
    }
}

#[tokio::test(start_paused = true)]
async fn unload_drops_an_idle_model_now_and_a_busy_one_when_its_last_request_ends() {
    let (scheduler, loader) = scheduler(SchedulerPolicy::default());
    drop(acquire(&scheduler, "a").await);
    scheduler.unload(&key("a")).await.unwrap();
    assert_eq!((state(&scheduler, "a"), loader.counts("a").drops()), (None, 1));

    let held = acquire(&scheduler, "b").await;
    scheduler.unload(&key("b")).await.unwrap();
    assert_eq!(state(&scheduler, "b"), Some(ModelState::Busy));
    drop(held);
    settle().await;
    assert_eq!((state(&scheduler, "b"), loader.counts("b").drops()), (None, 1));

    assert!(matches!(scheduler.unload(&key("c")).await, Err(SchedulerError::NotLoaded(_))));
}

#[tokio::test(start_paused = true)]
async fn unload_all_drops_idle_models_and_busy_ones_after_their_requests() {
    let (scheduler, loader) = scheduler(SchedulerPolicy::default());
    drop(acquire(&scheduler, "a").await);
    let held = acquire(&scheduler, "b").await;
    scheduler.unload_all().await;
    assert_eq!(loader.counts("a").drops(), 1);
    assert_eq!(state(&scheduler, "b"), Some(ModelState::Busy));
    drop(held);
    settle().await;
    assert!(scheduler.snapshot().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_runner_ref_generates_and_the_snapshot_serializes() {
    let (scheduler, _loader) = scheduler(SchedulerPolicy::default());
    let runner = acquire(&scheduler, "a").await;
    let request = GenerateRequest {
        messages: Vec::new().into(),
        prompt: Some("hello".into()).into(),
        sampling: Default::default(),
        stop: Vec::new().into(),
        max_tokens: 1,
        adapters: Vec::new().into(),
        ..GenerateRequest::default()
    };
    let mut pieces = String::new();
    struct Collect<'a>(&'a mut String);
    impl TokenSink for Collect<'_> {
        fn on_token(&mut self, piece: &str) -> SinkControl {
            self.0.push_str(piece);
            SinkControl::Continue
        }
    }
    let stats = runner.generate(&request, &mut Collect(&mut pieces)).unwrap();
    assert_eq!((pieces.as_str(), stats.finish_reason), ("hi", FinishReason::Stop));
    drop(runner);

    let json = serde_json::to_value(scheduler.snapshot()).unwrap();
    assert_eq!(json[0]["state"], "ready");
    assert_eq!(json[0]["key"]["model_id"], "a");
    assert_eq!(json[0]["memory"]["host_bytes"], 100);
    assert!(json[0]["unload_at_ms"].as_u64().is_some());
}

#[tokio::test(start_paused = true)]
async fn a_request_arriving_during_an_unload_waits_for_it_and_loads_again() {
    let (scheduler, loader) = scheduler(SchedulerPolicy::default());
    drop(acquire(&scheduler, "a").await);
    let a = key("a");
    let (unloaded, runner) = tokio::join!(scheduler.unload(&a), acquire(&scheduler, "a"));
    unloaded.unwrap();
    let counts = loader.counts("a");
    assert_eq!((counts.loads(), counts.drops()), (2, 1));
    assert_eq!(state(&scheduler, "a"), Some(ModelState::Busy));
    drop(runner);
}

#[tokio::test(start_paused = true)]
async fn a_load_whose_requests_were_all_cancelled_still_lands_and_goes_idle() {
    let (scheduler, loader) = scheduler(SchedulerPolicy::default());
    // A zero timeout polls the acquire once (the load starts) and then drops it.
    let cancelled = tokio::time::timeout(Duration::ZERO, acquire(&scheduler, "a")).await;
    assert!(cancelled.is_err());
    settle().await;
    assert_eq!((state(&scheduler, "a"), loader.counts("a").loads()), (Some(ModelState::Ready), 1));
    advance(5 * MIN).await;
    settle().await;
    assert_eq!((state(&scheduler, "a"), loader.counts("a").drops()), (None, 1));
}

#[tokio::test(start_paused = true)]
async fn trimming_on_demand_trims_an_idle_model_and_leaves_a_busy_one_alone() {
    let (scheduler, loader) = scheduler(SchedulerPolicy::default());
    let held = acquire(&scheduler, "a").await;
    let key = held.key().clone();
    assert!(!scheduler.trim(&key).await.unwrap(), "a busy model is not trimmed");
    drop(held);
    settle().await;
    assert!(scheduler.trim(&key).await.unwrap());
    assert_eq!(state(&scheduler, "a"), Some(ModelState::Trimmed));
    assert_eq!(loader.counts("a").trims(), 1);
    advance(5 * MIN).await;
    settle().await;
    assert_eq!(state(&scheduler, "a"), None, "the unload timer still runs after an early trim");
}

#[test]
fn where_a_model_lives_is_told_as_ollama_tells_it() {
    let split = |host_bytes, device_bytes| MemorySnapshot { host_bytes, device_bytes }.processor();
    assert_eq!(split(100, 0), "100% CPU");
    assert_eq!(split(0, 100), "100% GPU");
    assert_eq!(split(0, 0), "100% CPU");
    assert_eq!(split(37, 63), "37%/63% CPU/GPU");
}
