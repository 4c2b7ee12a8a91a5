use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use portcullis_core::{Body, BoxError, BoxTarget, BufferedBody, BuildError, StatusSet};
use tower_service::Service;

use crate::future::ResponseFuture;
use crate::policy::{Trigger, Triggers};

/// Tries its targets in order until one answers (see the [crate docs](crate)); when it
/// moves on is a [`Trigger`], [`Triggers`] by default.
///
/// Cloning is cheap: the targets and the trigger are shared behind one `Arc`.
pub struct Fallback<S, T = Triggers> {
    shared: Arc<Shared<S, T>>,
}

pub(crate) struct Shared<S, T> {
    pub(crate) targets: Vec<S>,
    pub(crate) triggers: T,
}

impl<S> Fallback<S> {
    /// A fallback over `targets`, in order, with the default [`Triggers`].
    pub fn new(targets: impl IntoIterator<Item = S>) -> Self {
        Self::from_parts(targets.into_iter().collect(), Triggers::default())
    }

    /// A builder: add targets in order, then set the triggers.
    pub fn builder() -> FallbackBuilder<S> {
        FallbackBuilder {
            targets: Vec::new(),
            triggers: Triggers::default(),
            invalid: None,
        }
    }
}

impl<S, T> Fallback<S, T> {
    fn from_parts(targets: Vec<S>, triggers: T) -> Self {
        Self {
            shared: Arc::new(Shared { targets, triggers }),
        }
    }

    /// The targets, in order.
    pub fn get_ref(&self) -> &[S] {
        &self.shared.targets
    }

    /// The targets, mutably (copied first if clones of this fallback share them).
    pub fn get_mut(&mut self) -> &mut Vec<S>
    where
        S: Clone,
        T: Clone,
    {
        &mut Arc::make_mut(&mut self.shared).targets
    }

    /// The targets, by value.
    pub fn into_inner(self) -> Vec<S>
    where
        S: Clone,
        T: Clone,
    {
        match Arc::try_unwrap(self.shared) {
            Ok(shared) => shared.targets,
            Err(shared) => shared.targets.clone(),
        }
    }

    /// When this fallback moves on.
    pub fn triggers(&self) -> &T {
        &self.shared.triggers
    }
}

impl<S: Clone, T: Clone> Clone for Shared<S, T> {
    fn clone(&self) -> Self {
        Self {
            targets: self.targets.clone(),
            triggers: self.triggers.clone(),
        }
    }
}

impl<S, T> Clone for Fallback<S, T> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug, T: fmt::Debug> fmt::Debug for Fallback<S, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fallback")
            .field("targets", &self.shared.targets)
            .field("triggers", &self.shared.triggers)
            .finish()
    }
}

impl<S, T> Service<Request<BufferedBody>> for Fallback<S, T>
where
    S: Service<Request<BufferedBody>, Response = Response<Body>> + Clone,
    S::Error: Into<BoxError>,
    T: Trigger,
{
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = ResponseFuture<S, S::Future, T>;

    /// Always ready: each target is a clone readied inside the response future, so that an
    /// unready target is skipped rather than holding up the whole fallback.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<BufferedBody>) -> Self::Future {
        // The targets stay shared; the future clones each one only when its turn comes.
        ResponseFuture::new(self.shared.clone(), req)
    }
}

/// Builds a [`Fallback`]: targets in order, then when to move on.
///
/// ```
/// use portcullis_core::BoxTarget;
/// use portcullis_fallback::Fallback;
/// use portcullis_provider::Mock;
///
/// let primary = Mock::builder().name("primary").build();
/// let secondary = Mock::builder().name("secondary").build();
/// let fallback = Fallback::builder()
///     .target(BoxTarget::new(primary))
///     .target(BoxTarget::new(secondary))
///     .on_status_codes([429, 500, 503])
///     .context_window_fallback(true)
///     .build()
///     .unwrap();
/// assert_eq!(fallback.get_ref().len(), 2);
///
/// let err = Fallback::<BoxTarget>::builder().on_status_codes([429, 99]).build().unwrap_err();
/// assert_eq!(err.to_string(), "on_status_codes: must be HTTP status codes from 100 to 599, got 99");
/// ```
pub struct FallbackBuilder<S, T = Triggers> {
    targets: Vec<S>,
    triggers: T,
    /// A setting that cannot be used, reported by [`build`](Self::build).
    invalid: Option<BuildError>,
}

impl<S, T> FallbackBuilder<S, T> {
    /// Adds the next target.
    pub fn target(mut self, target: S) -> Self {
        self.targets.push(target);
        self
    }

    /// Adds targets, in order, after those already added.
    pub fn targets(mut self, targets: impl IntoIterator<Item = S>) -> Self {
        self.targets.extend(targets);
        self
    }

    /// Decides when to move on with a [`Trigger`] of your own instead of [`Triggers`] (a
    /// closure `Fn(StatusCode) -> bool` is one). It replaces any status list or
    /// context-window setting given before.
    pub fn trigger<T2: Trigger>(self, trigger: T2) -> FallbackBuilder<S, T2> {
        FallbackBuilder {
            targets: self.targets,
            triggers: trigger,
            invalid: None,
        }
    }

    /// The fallback. With no target, every call answers
    /// [`Unavailable`](portcullis_core::error::Unavailable) (503).
    ///
    /// # Errors
    /// A status code outside 100..=599 given to [`on_status_codes`](Self::on_status_codes),
    /// at the path `on_status_codes`.
    pub fn build(self) -> Result<Fallback<S, T>, BuildError> {
        match self.invalid {
            Some(err) => Err(err),
            None => Ok(Fallback::from_parts(self.targets, self.triggers)),
        }
    }
}

impl<S> FallbackBuilder<S> {
    /// Moves on after these statuses only, replacing the default list (408, 409, 429,
    /// 5xx); Portkey's `strategy.on_status_codes`. Errors still move on (see [`Triggers`]).
    /// A number outside 100..=599 makes [`build`](Self::build) fail.
    pub fn on_status_codes(mut self, codes: impl IntoIterator<Item = u16>) -> Self {
        match StatusSet::new(codes) {
            Ok(codes) => {
                let context_window = self.triggers.context_window_enabled();
                self.triggers = Triggers::on_status_codes(codes).context_window(context_window);
            }
            Err(e) => self.invalid = Some(BuildError::at("on_status_codes", e.to_string())),
        }
        self
    }

    /// Also moves on after a 400 that says the context window was exceeded (default off).
    pub fn context_window_fallback(mut self, on: bool) -> Self {
        self.triggers = self.triggers.context_window(on);
        self
    }

    /// Sets every trigger at once.
    pub fn triggers(mut self, triggers: Triggers) -> Self {
        self.triggers = triggers;
        self
    }
}

impl<Tr> FallbackBuilder<BoxTarget, Tr> {
    /// Adds the next target, boxed: for targets of different types.
    pub fn boxed<T>(self, target: T) -> Self
    where
        T: Service<Request<BufferedBody>, Response = Response<Body>>
            + Clone
            + Send
            + Sync
            + 'static,
        T::Error: Into<BoxError>,
        T::Future: Send + 'static,
    {
        self.target(box_target(target))
    }
}

/// Boxes `target` into a [`BoxTarget`], whatever its error type.
pub fn box_target<T>(target: T) -> BoxTarget
where
    T: Service<Request<BufferedBody>, Response = Response<Body>> + Clone + Send + Sync + 'static,
    T::Error: Into<BoxError>,
    T::Future: Send + 'static,
{
    BoxTarget::new(tower::ServiceExt::map_err(target, Into::into))
}

impl<S: fmt::Debug, T: fmt::Debug> fmt::Debug for FallbackBuilder<S, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackBuilder")
            .field("targets", &self.targets)
            .field("triggers", &self.triggers)
            .field("invalid", &self.invalid)
            .finish()
    }
}
