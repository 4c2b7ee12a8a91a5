//! [`TagLayer`]: the tag layer's configuration, compiled once and shared by every clone.

use std::fmt;
use std::sync::Arc;

use http::HeaderName;
use portcullis_core::BuildError;
use portcullis_core::context::Metadata;
use tower_layer::Layer;

use crate::metadata::MetadataLimits;
use crate::meter::{DEFAULT_LABEL_CAP, MAX_METADATA_LABELS, Meter, metadata_label_name};
use crate::service::Tag;

/// Portkey's metadata header.
pub const METADATA_HEADER: &str = "x-portkey-metadata";
/// Portkey's trace id header (core's name for it).
pub const TRACE_ID_HEADER: &str = portcullis_core::headers::TRACE_ID_HEADER;
/// Portkey's virtual key header.
pub const VIRTUAL_KEY_HEADER: &str = "x-portkey-virtual-key";

/// What a [`Tag`] service reads, limits and labels with, shared by its clones.
pub(crate) struct Shared {
    pub(crate) metadata_header: HeaderName,
    pub(crate) trace_header: HeaderName,
    pub(crate) virtual_key_header: HeaderName,
    pub(crate) limits: MetadataLimits,
    pub(crate) meter: Meter,
    /// The metadata of requests that have none, shared.
    pub(crate) empty: Metadata,
    /// Metadata keys whose values spans (and so logs) may show.
    pub(crate) log_metadata_keys: Box<[String]>,
}

/// Applies [`Tag`] to a service; a builder for its settings.
///
/// No setter panics. Header names are typed ([`HeaderName`]), so a bad name is caught where
/// it is made; [`metadata_label`](Self::metadata_label), the one setting whose validity
/// depends on the others, answers a [`BuildError`].
///
/// ```
/// use http::HeaderName;
/// use portcullis_tag::TagLayer;
///
/// # fn main() -> Result<(), portcullis_core::BuildError> {
/// let layer = TagLayer::new()
///     .metadata_header(HeaderName::from_static("x-metadata"))
///     .max_keys(16)
///     .max_value_len(256)
///     .metadata_label("team")?
///     .label_cap(32);
/// # let _ = layer;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TagLayer {
    /// Shared: a layer is cloned per request (by the gateway, for each request's stack).
    settings: Arc<Settings>,
    /// Compiled from the settings; shared by every service this layer makes, so they share
    /// one set of label caps and metric handles.
    shared: Arc<Shared>,
}

/// The settings of a [`TagLayer`], as given.
#[derive(Clone, Debug)]
struct Settings {
    metadata_header: HeaderName,
    trace_header: HeaderName,
    virtual_key_header: HeaderName,
    limits: MetadataLimits,
    metadata_labels: Vec<String>,
    label_cap: usize,
    log_metadata_keys: Vec<String>,
}

impl Settings {
    fn compile(&self) -> Arc<Shared> {
        Arc::new(Shared {
            metadata_header: self.metadata_header.clone(),
            trace_header: self.trace_header.clone(),
            virtual_key_header: self.virtual_key_header.clone(),
            limits: self.limits,
            meter: Meter::new(self.label_cap, &self.metadata_labels),
            empty: Metadata::default(),
            log_metadata_keys: self.log_metadata_keys.clone().into_boxed_slice(),
        })
    }
}

impl TagLayer {
    /// Portkey's headers, the default limits (32 keys, 128 characters), no metadata labels,
    /// 64 distinct values per label.
    pub fn new() -> Self {
        let settings = Settings {
            metadata_header: HeaderName::from_static(METADATA_HEADER),
            trace_header: HeaderName::from_static(TRACE_ID_HEADER),
            virtual_key_header: HeaderName::from_static(VIRTUAL_KEY_HEADER),
            limits: MetadataLimits::default(),
            metadata_labels: Vec::new(),
            label_cap: DEFAULT_LABEL_CAP,
            log_metadata_keys: Vec::new(),
        };
        Self {
            shared: settings.compile(),
            settings: Arc::new(settings),
        }
    }

    /// Compiles the settings again after one changed.
    fn changed(mut self) -> Self {
        self.shared = self.settings.compile();
        self
    }

    /// Reads metadata from `name` instead of `x-portkey-metadata`.
    ///
    /// A name from text is checked where it is made: `HeaderName::from_static` (panics on a
    /// bad literal) or `HeaderName::try_from` (an error to handle).
    pub fn metadata_header(mut self, name: HeaderName) -> Self {
        Arc::make_mut(&mut self.settings).metadata_header = name;
        self.changed()
    }

    /// Reads the client's trace id from `name` instead of `x-portkey-trace-id`.
    ///
    /// A name from text is checked where it is made: `HeaderName::from_static` (panics on a
    /// bad literal) or `HeaderName::try_from` (an error to handle).
    pub fn trace_header(mut self, name: HeaderName) -> Self {
        Arc::make_mut(&mut self.settings).trace_header = name;
        self.changed()
    }

    /// Reads the virtual key from `name` instead of `x-portkey-virtual-key`.
    ///
    /// A name from text is checked where it is made: `HeaderName::from_static` (panics on a
    /// bad literal) or `HeaderName::try_from` (an error to handle).
    pub fn virtual_key_header(mut self, name: HeaderName) -> Self {
        Arc::make_mut(&mut self.settings).virtual_key_header = name;
        self.changed()
    }

    /// Sets every metadata limit at once.
    pub fn limits(mut self, limits: MetadataLimits) -> Self {
        Arc::make_mut(&mut self.settings).limits = limits;
        self.changed()
    }

    /// Sets the most metadata keys a request may send (default 32).
    pub fn max_keys(mut self, n: usize) -> Self {
        Arc::make_mut(&mut self.settings).limits.max_keys = n;
        self.changed()
    }

    /// Sets the longest metadata key, in characters (default 128).
    pub fn max_key_len(mut self, chars: usize) -> Self {
        Arc::make_mut(&mut self.settings).limits.max_key_len = chars;
        self.changed()
    }

    /// Sets the longest metadata value, in characters (default 128).
    pub fn max_value_len(mut self, chars: usize) -> Self {
        Arc::make_mut(&mut self.settings).limits.max_value_len = chars;
        self.changed()
    }

    /// Makes metadata key `key` a metric label, `metadata_KEY` (characters outside
    /// `[a-zA-Z0-9_]` become `_`). Only allow-listed keys become labels; a key allowed
    /// already is allowed once.
    ///
    /// # Errors
    /// A [`BuildError`] at `metadata_labels[N]` (the layer is consumed) when `key` would be the label of a ninth
    /// key ([`MAX_METADATA_LABELS`]: every label multiplies the number of series), or would
    /// have the label name of a key allowed already (`cost-center` after `cost_center`), which
    /// would give one series the same label twice.
    ///
    /// ```
    /// use portcullis_tag::TagLayer;
    ///
    /// let mut layer = TagLayer::new();
    /// for key in ["a", "b", "c", "d", "e", "f", "g", "h"] {
    ///     layer = layer.metadata_label(key).unwrap();
    /// }
    /// let err = layer.metadata_label("i").unwrap_err();
    /// assert_eq!(err.path(), "metadata_labels[8]");
    /// assert_eq!(err.message(), "at most 8 metadata keys can be labels");
    /// ```
    pub fn metadata_label(mut self, key: impl Into<String>) -> Result<Self, BuildError> {
        let key = key.into();
        let labels = &self.settings.metadata_labels;
        if labels.contains(&key) {
            return Ok(self);
        }
        let label = metadata_label_name(&key);
        if let Some(other) = labels.iter().find(|k| metadata_label_name(k) == label) {
            return Err(BuildError::at(
                format!("metadata_labels[{}]", labels.len()),
                format!("`{key}` and `{other}` would both be the label `{label}`"),
            ));
        }
        if labels.len() == MAX_METADATA_LABELS {
            return Err(BuildError::at(
                format!("metadata_labels[{}]", labels.len()),
                format!("at most {MAX_METADATA_LABELS} metadata keys can be labels"),
            ));
        }
        Arc::make_mut(&mut self.settings).metadata_labels.push(key);
        Ok(self.changed())
    }

    /// Sets how many distinct values each label records before recording `other`
    /// (default 64).
    pub fn label_cap(mut self, n: usize) -> Self {
        Arc::make_mut(&mut self.settings).label_cap = n;
        self.changed()
    }

    /// Lets the value of metadata key `key` appear in the request span (and so in logs and
    /// exported traces). Without this, the span shows the key with the value `<redacted>`:
    /// metadata often carries user ids and emails.
    pub fn log_metadata_key(mut self, key: impl Into<String>) -> Self {
        let key = key.into();
        if !self.settings.log_metadata_keys.contains(&key) {
            Arc::make_mut(&mut self.settings)
                .log_metadata_keys
                .push(key);
        }
        self.changed()
    }
}

impl Default for TagLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for TagLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TagLayer").field(&self.settings).finish()
    }
}

impl<S> Layer<S> for TagLayer {
    type Service = Tag<S>;

    fn layer(&self, inner: S) -> Tag<S> {
        Tag::from_shared(inner, self.shared.clone())
    }
}
