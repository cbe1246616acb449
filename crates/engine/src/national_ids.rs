//! A patient's national id on the command path: sealed by the vault under the patient's data key
//! before it reaches the log, refused when another patient holds it, and recognised in a retry
//! by opening the stored number (every sealing differs).

use uuid::Uuid;

use forlop_domain::events::PatientRegistered;
use forlop_domain::national_id::NationalId;
use forlop_domain::{decide, Command, Event, References, StreamRef, StreamState};
use forlop_store::{ExpectedVersion, RecordedEvent, StoreError};
use forlop_vault::VaultError;

use crate::access::Caller;
use crate::error::EngineError;
use crate::record::{RecordOptions, Recorded};
use crate::replay::decode;
use crate::Engine;

/// The vault's errors as the engine answers them.
fn vault_error(e: VaultError) -> EngineError {
    match e {
        VaultError::NationalIdInUse => EngineError::Domain(forlop_domain::DomainError::AlreadyExists(
            "a patient with this national id is already registered".into(),
        )),
        other => EngineError::Unavailable(format!("the key table could not be written: {other}")),
    }
}

impl Engine {
    /// Seals the national id and records the registration. A retry with the same event id and the
    /// same number is recognised by opening the stored number, since every sealing differs.
    pub(crate) async fn register_with_national_id(
        &self,
        caller: &Caller,
        mut event: PatientRegistered,
        id: NationalId,
        options: RecordOptions,
    ) -> Result<Recorded, EngineError> {
        let stream = StreamRef::Patient(event.patient_id).name();
        if let Some(event_id) = options.event_id {
            if let Some(stored) = self.store.event_by_id(event_id).await? {
                if !self.same_registration(&stored, &event, &id).await? {
                    return Err(EngineError::IdempotencyConflict(event_id));
                }
                return Ok(Recorded::retry_of(event_id, &stored));
            }
        }
        if self.store.stream_version(&stream).await?.is_some() {
            return Err(forlop_domain::DomainError::AlreadyExists(format!(
                "patient {} already exists",
                event.patient_id
            ))
            .into());
        }
        // The rules first, so that a refused registration never reaches the key table: a number
        // sealed for a patient who was then not recorded would be held by no one, for good.
        decide(&StreamState::default(), &References::default(), Command::RegisterPatient(event.clone()))?;
        if let Some(expected) = options.expected_version {
            if !matches!(expected, ExpectedVersion::Any | ExpectedVersion::NoStream) {
                return Err(StoreError::WrongExpectedVersion { stream, expected, current: None }.into());
            }
        }
        let patient = event.patient_id;
        event.national_id = Some(self.seal_national_id(caller, patient, &id).await?);
        let recorded =
            self.record_locked(caller, Command::RegisterPatient(event), &References::default(), options).await;
        if recorded.is_err() && self.store.stream_version(&stream).await.ok().flatten().is_none() {
            // Not recorded after all: the number goes back to no one.
            if let Err(e) = self.vault().forget(patient).await {
                tracing::error!(error = %e, "could not release the national id of a registration that failed");
            }
        }
        recorded
    }

    /// Whether `stored` registers the same patient as `event` with national id `id`: the number
    /// is compared by opening it, since every sealing differs.
    pub(crate) async fn same_registration(
        &self,
        stored: &RecordedEvent,
        event: &PatientRegistered,
        id: &NationalId,
    ) -> Result<bool, EngineError> {
        Ok(match decode(stored)? {
            Event::PatientRegistered(s) if stored.stream == StreamRef::Patient(event.patient_id).name() => {
                let revealed = match s.national_id.as_deref().map(forlop_vault::Sealed::from_base64) {
                    Some(Ok(sealed)) => self.vault().reveal(s.patient_id, &sealed).await.ok().flatten(),
                    _ => None,
                };
                s.birth_year == event.birth_year && s.gender == event.gender && revealed.as_ref() == Some(id)
            }
            _ => false,
        })
    }

    /// Seals a new patient's national id under their data key, refusing a number another
    /// patient holds.
    pub(crate) async fn seal_national_id(
        &self,
        caller: &Caller,
        patient: Uuid,
        id: &NationalId,
    ) -> Result<String, EngineError> {
        self.check_national_id_free(caller, patient, id).await?;
        Ok(self.vault().protect(patient, id).await.map_err(vault_error)?.to_base64())
    }

    /// Refuses a national id that another patient holds. The refusal tells the caller that the
    /// number is someone's, so it is an access record on that patient (who sees it in
    /// `myAccessLog`), like every other resolution of a national id.
    pub(crate) async fn check_national_id_free(
        &self,
        caller: &Caller,
        patient: Uuid,
        id: &NationalId,
    ) -> Result<(), EngineError> {
        match self.vault_find(id).await? {
            Some(holder) if holder != patient => {
                self.log_access(vec![caller.denied(holder, "registerPatient.nationalId")]).await?;
                Err(vault_error(VaultError::NationalIdInUse))
            }
            _ => Ok(()),
        }
    }
}
