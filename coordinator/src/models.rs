//! Model versions and training jobs. A version is a document in the
//! store's `models` collection: the classifiers (XGBoost JSON), their
//! feature list, window and parameters, the cases they trained on and the
//! evaluation on the cases they did not. One version is active; activating
//! another keeps the previous one for rollback. Imported datasets live in
//! the `datasets` collection.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

pub use distdiag_api::models::{DatasetInfo, Job, JobState, ModelDoc, ModelSummary};

use distdiag_dataset::Dataset;
use distdiag_diagnose::evaluate::{DatasetExt, Evaluation};
use distdiag_diagnose::model::{train, Scorer, TrainParams};
use distdiag_store::{SeriesStore, StoreError};

const MODELS: &str = "models";
const META: &str = "models_meta";
const DATASETS: &str = "datasets";

#[derive(Debug, thiserror::Error)]
pub enum ModelsError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Meta {
    active: Option<String>,
    /// Previously active versions, newest last.
    previous: Vec<String>,
}

/// The active scorer, loaded once per activation.
pub struct Active {
    pub id: String,
    pub scorer: Scorer,
}

pub struct Models {
    store: Arc<dyn SeriesStore>,
    jobs: Mutex<BTreeMap<String, Job>>,
    active: Mutex<Option<Arc<Mutex<Active>>>>,
    meta_lock: Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn json_err(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

impl Models {
    /// Opens the registry and loads the active version, if any.
    pub fn new(store: Arc<dyn SeriesStore>) -> Arc<Models> {
        let m = Arc::new(Models {
            store,
            jobs: Mutex::new(BTreeMap::new()),
            active: Mutex::new(None),
            meta_lock: Mutex::new(()),
        });
        if let Ok(mut meta) = m.meta() {
            if let Some(id) = meta.active.clone() {
                if let Err(e) = m.load_active(&id) {
                    // Not active in effect, so not in the registry either:
                    // `GET /api/models` then shows none active, as the
                    // rankings (statistical) do.
                    tracing::warn!("active model {id} could not be loaded, none is active: {e}");
                    meta.active = None;
                    if let Err(e) = m.put_meta(&meta) {
                        tracing::warn!("could not record that no model is active: {e}");
                    }
                }
            }
        }
        m
    }

    fn meta(&self) -> Result<Meta, StoreError> {
        Ok(match self.store.get_doc(META, "meta")? {
            Some(b) => serde_json::from_slice(&b).map_err(json_err)?,
            None => Meta::default(),
        })
    }

    fn put_meta(&self, meta: &Meta) -> Result<(), StoreError> {
        self.store.put_doc(META, "meta", &serde_json::to_vec(meta).map_err(json_err)?)
    }

    pub fn get(&self, id: &str) -> Result<ModelDoc, ModelsError> {
        let b = self
            .store
            .get_doc(MODELS, id)?
            .ok_or_else(|| ModelsError::NotFound(format!("unknown model {id:?}")))?;
        Ok(serde_json::from_slice(&b).map_err(json_err)?)
    }

    fn summary(doc: &ModelDoc, active: Option<&str>) -> ModelSummary {
        ModelSummary {
            id: doc.id.clone(),
            created_ms: doc.created_ms,
            source: doc.source.clone(),
            active: active == Some(doc.id.as_str()),
            types: doc.set.types.iter().map(|t| t.kind.clone()).collect(),
            skipped: doc.set.skipped.clone(),
            type_notes: doc.set.type_notes.clone(),
            features: doc.set.feature_names.len(),
            window: doc.set.window,
            params: doc.set.params.clone(),
            train_cases: doc.set.train_cases.len(),
            valid_cases: doc.set.valid_cases.len(),
            evaluation: doc.evaluation.clone(),
            evaluation_note: doc.evaluation_note.clone(),
        }
    }

    pub fn list(&self) -> Result<Vec<ModelSummary>, ModelsError> {
        let active = self.meta()?.active;
        let mut out = Vec::new();
        for (_, v) in self.store.docs(MODELS)? {
            let doc: ModelDoc = serde_json::from_slice(&v).map_err(json_err)?;
            out.push(Self::summary(&doc, active.as_deref()));
        }
        Ok(out)
    }

    pub fn describe(&self, id: &str) -> Result<ModelSummary, ModelsError> {
        let doc = self.get(id)?;
        Ok(Self::summary(&doc, self.meta()?.active.as_deref()))
    }

    pub fn active_id(&self) -> Option<String> {
        lock(&self.active).as_ref().map(|a| lock(a).id.clone())
    }

    /// The active scorer (shared; lock it to score).
    pub fn active(&self) -> Option<Arc<Mutex<Active>>> {
        lock(&self.active).clone()
    }

    /// A stored version's scorer; refused when it was trained on features
    /// this version does not compute.
    fn stored_scorer(doc: &ModelDoc) -> Result<Scorer, ModelsError> {
        Scorer::load_stored(&doc.set)
            .map_err(|e| ModelsError::Invalid(format!("model {}: {e}", doc.id)))
    }

    fn load_active(&self, id: &str) -> Result<(), ModelsError> {
        let doc = self.get(id)?;
        let scorer = Self::stored_scorer(&doc)?;
        *lock(&self.active) = Some(Arc::new(Mutex::new(Active { id: id.to_owned(), scorer })));
        Ok(())
    }

    pub fn activate(&self, id: &str) -> Result<ModelSummary, ModelsError> {
        let _g = lock(&self.meta_lock);
        self.load_active(id)?;
        let mut meta = self.meta()?;
        if meta.active.as_deref() != Some(id) {
            if let Some(prev) = meta.active.take() {
                meta.previous.push(prev);
            }
            meta.active = Some(id.to_owned());
            self.put_meta(&meta)?;
        }
        self.describe(id)
    }

    /// Back to the previously active version.
    pub fn rollback(&self) -> Result<ModelSummary, ModelsError> {
        let _g = lock(&self.meta_lock);
        let mut meta = self.meta()?;
        let prev = meta.previous.pop().ok_or_else(|| {
            ModelsError::NotFound("no earlier active model to roll back to".into())
        })?;
        self.load_active(&prev)?;
        meta.active = Some(prev.clone());
        self.put_meta(&meta)?;
        drop(_g);
        self.describe(&prev)
    }

    pub fn save_dataset(&self, name: &str, ds: &Dataset) -> Result<(), ModelsError> {
        if name.is_empty()
            || name.len() > 64
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(ModelsError::Invalid(format!(
                "dataset name {name:?}: 1-64 of A-Z a-z 0-9 - _ ."
            )));
        }
        ds.validate().map_err(|e| ModelsError::Invalid(e.to_string()))?;
        self.store.put_doc(DATASETS, name, &serde_json::to_vec(ds).map_err(json_err)?)?;
        Ok(())
    }

    pub fn dataset(&self, name: &str) -> Result<Dataset, ModelsError> {
        let b = self
            .store
            .get_doc(DATASETS, name)?
            .ok_or_else(|| ModelsError::NotFound(format!("unknown dataset {name:?}")))?;
        Ok(serde_json::from_slice(&b).map_err(json_err)?)
    }

    pub fn datasets(&self) -> Result<Vec<DatasetInfo>, ModelsError> {
        let mut out = Vec::new();
        for (name, v) in self.store.docs(DATASETS)? {
            let ds: Dataset = serde_json::from_slice(&v).map_err(json_err)?;
            out.push(DatasetInfo {
                name,
                nodes: ds.series.len(),
                cases: ds.cases.len(),
                labels: ds.labels.len(),
                window: ds.manifest.window,
            });
        }
        Ok(out)
    }

    pub fn job(&self, id: &str) -> Option<Job> {
        lock(&self.jobs).get(id).cloned()
    }

    fn update_job(&self, id: &str, f: impl FnOnce(&mut Job)) {
        if let Some(j) = lock(&self.jobs).get_mut(id) {
            f(j);
        }
    }

    /// Starts a training job over `dataset` (built by the caller); the
    /// job trains, evaluates on the held-out cases, stores the version and
    /// activates it when `activate`. Returns the job id.
    pub fn start_training(
        self: &Arc<Self>,
        source: String,
        dataset: Dataset,
        params: TrainParams,
        activate: bool,
        now_ms: i64,
    ) -> Result<String, ModelsError> {
        params.validate().map_err(ModelsError::Invalid)?;
        let id = format!("train-{now_ms}");
        {
            let mut jobs = lock(&self.jobs);
            if jobs.values().any(|j| j.state == JobState::Running) {
                return Err(ModelsError::Invalid("a training job is already running".into()));
            }
            jobs.insert(
                id.clone(),
                Job {
                    id: id.clone(),
                    state: JobState::Running,
                    progress: 0.0,
                    message: "building windows".into(),
                    model_id: None,
                    started_ms: now_ms,
                    ended_ms: None,
                },
            );
        }
        let me = self.clone();
        let job = id.clone();
        tokio::task::spawn_blocking(move || {
            let result = me.run_training(&job, source, dataset, params, activate, now_ms);
            let end = distdiag_store::now_ms();
            me.update_job(&job, |j| {
                j.ended_ms = Some(end);
                match result {
                    Ok(model) => {
                        j.state = JobState::Done;
                        j.progress = 1.0;
                        j.message = format!("trained {model}");
                        j.model_id = Some(model);
                    }
                    Err(e) => {
                        j.state = JobState::Failed;
                        j.message = e;
                    }
                }
            });
        });
        Ok(id)
    }

    fn run_training(
        &self,
        job: &str,
        source: String,
        dataset: Dataset,
        params: TrainParams,
        activate: bool,
        now_ms: i64,
    ) -> Result<String, String> {
        let windows = dataset.windows(None);
        self.update_job(job, |j| {
            j.progress = 0.1;
            j.message = format!("{} windows, {} features", windows.rows.len(), windows.width());
        });
        let set = train(&windows, dataset.manifest.window, &params, &mut |done, of, what| {
            let p = 0.1 + 0.8 * done as f64 / of.max(1) as f64;
            self.update_job(job, |j| {
                j.progress = p;
                j.message = format!("training {what} ({done}/{of})");
            });
        })?;
        self.update_job(job, |j| {
            j.progress = 0.9;
            j.message = "evaluating on held-out cases".into();
        });
        let scorer = Scorer::load(&set)?;
        let (evaluation, evaluation_note) =
            match dataset.evaluate(Some(&scorer), &set.train_cases, params.seed) {
                Ok(e) => (Some(e), None),
                Err(e) => (None, Some(e)),
            };
        let seq = self.store.docs(MODELS).map_err(|e| e.to_string())?.len() + 1;
        let id = format!("m{seq:04}-{now_ms}");
        let doc = ModelDoc {
            id: id.clone(),
            created_ms: now_ms,
            source,
            set,
            evaluation,
            evaluation_note,
        };
        self.store
            .put_doc(MODELS, &id, &serde_json::to_vec(&doc).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
        if activate {
            self.activate(&id).map_err(|e| e.to_string())?;
        }
        Ok(id)
    }

    /// Evaluates a stored version on `dataset`, leaving out its training cases.
    pub fn evaluate(
        &self,
        id: &str,
        dataset: &Dataset,
        seed: u64,
    ) -> Result<Evaluation, ModelsError> {
        let doc = self.get(id)?;
        let scorer = Self::stored_scorer(&doc)?;
        dataset.evaluate(Some(&scorer), &doc.set.train_cases, seed).map_err(ModelsError::Invalid)
    }
}
