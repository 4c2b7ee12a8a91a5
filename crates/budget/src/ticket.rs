//! [`Ticket`]: an admitted request's reservation, settled exactly once.

use std::sync::Arc;

use http::Response;
use portcullis_core::Body;
use portcullis_core::facts::{CacheStatus, ResponseFacts};
use portcullis_core::observe::{Observation, observe_response};

use crate::limits::{Limits, Plan};
use crate::store::{LimitStore, Reservation, Standing};

/// Settles a reservation exactly once: from the observer's report when the answer ends
/// (complete, broken or cancelled), or, dropped before any answer came (an error, the
/// client went away before the headers), by giving it all back.
pub(crate) struct Ticket<St: LimitStore> {
    limits: Arc<Limits<St>>,
    reservation: Arc<Reservation>,
    plan: Arc<Plan>,
    standings: Vec<Standing>,
    fallback: bool,
    done: bool,
}

impl<St: LimitStore> Ticket<St> {
    pub(crate) fn new(
        limits: Arc<Limits<St>>,
        reservation: Arc<Reservation>,
        plan: Arc<Plan>,
        standings: Vec<Standing>,
        fallback: bool,
    ) -> Self {
        Self {
            limits,
            reservation,
            plan,
            standings,
            fallback,
            done: false,
        }
    }

    /// Adds the limit headers to the answer and settles when its body ends.
    pub(crate) fn attach(self, response: Response<Body>) -> Response<Body> {
        let mut response = if response.extensions().get::<Observation>().is_some() {
            response
        } else {
            observe_response(response)
        };
        self.limits.success_headers(
            &self.reservation,
            &self.plan,
            &self.standings,
            response.headers_mut(),
        );
        let facts = ResponseFacts::get(&response);
        let cache_hit = facts
            .and_then(|f| f.cache)
            .is_some_and(|c| matches!(c, CacheStatus::Hit | CacheStatus::SemanticHit));
        let provider = facts.and_then(|f| f.provider.clone());
        if let Some(observation) = response.extensions().get::<Observation>() {
            let mut ticket = self;
            observation.on_report(move |report| {
                ticket.done = true;
                ticket.limits.settle(
                    &ticket.reservation,
                    &ticket.plan,
                    ticket.fallback,
                    report,
                    cache_hit,
                    provider.as_deref(),
                );
            });
        }
        response
    }
}

impl<St: LimitStore> Drop for Ticket<St> {
    fn drop(&mut self) {
        if !self.done {
            self.done = true;
            self.limits
                .release(&self.reservation, &self.plan, self.fallback);
        }
    }
}
