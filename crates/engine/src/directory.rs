//! Reads that are not about one patient: services, therapists, how far the log has come, and
//! care alerts (which name patients, so each one found is access-logged before it is handed on).

use chrono::{DateTime, Utc};
use forlop_domain::StreamRef;
use forlop_projections::alerts::{self, AlertThresholds, CareAlert};
use forlop_projections::{ServiceView, TherapistView};
use uuid::Uuid;

use crate::policy::Operation;
use crate::{Caller, Engine, EngineError};

impl Engine {
    /// Every registered service, by name.
    pub fn services(&self, caller: &Caller) -> Result<Vec<ServiceView>, EngineError> {
        self.authorize(caller, Operation::ListServices)?;
        let mut out: Vec<_> = self.model().services.values().cloned().collect();
        out.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Every registered therapist, by name.
    pub fn therapists(&self, caller: &Caller) -> Result<Vec<TherapistView>, EngineError> {
        self.authorize(caller, Operation::ListTherapists)?;
        let mut out: Vec<_> = self.model().therapists.values().cloned().collect();
        out.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// The events of a service's or a therapist's own stream, oldest first, to whoever may list
    /// them (no patient data: a stream of reference data names no patient).
    pub async fn reference_events(
        &self,
        caller: &Caller,
        stream: StreamRef,
    ) -> Result<Vec<forlop_store::RecordedEvent>, EngineError> {
        match stream {
            StreamRef::Service(_) => self.authorize(caller, Operation::ListServices)?,
            StreamRef::Therapist(_) => self.authorize(caller, Operation::ListTherapists)?,
            StreamRef::Patient(_) => {
                return Err(EngineError::forbidden("a patient's events are read through their grant (`history`)"))
            }
        }
        Ok(self.store().read_stream(&stream.name(), 0, usize::MAX).await?)
    }

    /// (events committed to the log, events folded into this node's read model).
    pub fn log_progress(&self, caller: &Caller) -> Result<(u64, u64), EngineError> {
        self.authorize(caller, Operation::LogInfo)?;
        Ok((self.committed(), self.projected()))
    }

    /// Open episodes (of `service`, or every one) that need attention as of `as_of`, judged only
    /// on facts with clinical time at or before it; every patient named is access-logged first.
    pub async fn care_alerts(
        &self,
        caller: &Caller,
        as_of: DateTime<Utc>,
        service: Option<Uuid>,
        thresholds: AlertThresholds,
    ) -> Result<Vec<CareAlert>, EngineError> {
        self.authorize(caller, Operation::CareAlerts(service))?;
        let (u, i) = (thresholds.unassigned_days, thresholds.inactive_days);
        if !(u.is_finite() && u >= 0.0 && i.is_finite() && i >= 0.0) {
            return Err(EngineError::invalid("unassignedDays and inactiveDays must be non-negative"));
        }
        if let Some(s) = service {
            self.known_service(s)?;
        }
        let found = self.analyse(move |model| alerts::care_alerts(model, as_of, service, thresholds)).await?;
        self.disclosed(caller, found.iter().map(|a| a.patient_id), "careAlerts").await?;
        Ok(found)
    }
}
