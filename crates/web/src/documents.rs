//! Documents of a chart: the patient's CCD downloaded, and a referral note made and kept on
//! the record as an outgoing document (its download offered). The documents are made and
//! filed by the exchange service ([`exchange::documents`]); the app only asks for them.

use crate::WebApp;
use crate::clinical::Reader;
use crate::error::WebError;
use crate::pages::open_chart;
use crate::session::Session;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::Value;
use std::collections::HashMap;

impl From<exchange::Error> for WebError {
    fn from(error: exchange::Error) -> Self {
        use fhir::ErrorClass;
        match error {
            exchange::Error::Access(e) => e.into(),
            other => match other.class() {
                ErrorClass::NotFound | ErrorClass::Gone => WebError::NotFound,
                ErrorClass::Unauthenticated | ErrorClass::Forbidden => WebError::Forbidden(other.to_string()),
                ErrorClass::Internal => {
                    tracing::error!("web app: a document could not be made or filed");
                    WebError::Internal
                }
                _ => WebError::BadRequest(other.to_string()),
            },
        }
    }
}

/// This installation as the documents' custodian, as the FHIR API names it.
fn custodian(app: &WebApp) -> Value {
    exchange::documents::custodian(&app.fhir_base_url())
}

/// Refuses (403) unless the user may file a document on a record: create its
/// DocumentReference and write its Binary (`PUT Binary/<id>`). The form is offered only then.
pub(crate) fn may_file(reader: &Reader) -> Result<(), WebError> {
    reader.may_create("DocumentReference")?;
    Ok(reader.access.may(auth::Interaction::Update, "Binary")?)
}

/// An XML document as a download named `filename`.
fn attachment(xml: Vec<u8>, filename: &str) -> Response {
    let mut response = (StatusCode::OK, xml).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/xml; charset=utf-8"));
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `GET /app/patients/{id}/ccd`: the patient's Continuity of Care Document, as a download.
pub(crate) async fn download_ccd(
    State(app): State<WebApp>,
    session: Session,
    Path(patient): Path<String>,
) -> Result<Response, WebError> {
    let (id, custodian) = (patient.clone(), custodian(&app));
    let made = open_chart(&app, &session, &patient, "ccd-download", move |reader, _banner| {
        Ok(exchange::documents::export_ccda(&reader.access, &id, ccda::DocumentType::Ccd, (None, None), &custodian)?)
    })
    .await?;
    Ok(match made {
        Ok(document) => attachment(document.xml.into_bytes(), &format!("ccd-{patient}.xml")),
        Err(closed) => (StatusCode::FORBIDDEN, closed).into_response(),
    })
}

/// `POST /app/patients/{id}/referral-document`: a Referral Note made of the record and kept
/// on it as an outgoing document; back to the summary, which offers its download.
pub(crate) async fn send_referral(
    State(app): State<WebApp>,
    session: Session,
    Path(patient): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, WebError> {
    session.check_form(&form)?;
    let (id, custodian) = (patient.clone(), custodian(&app));
    let filed = open_chart(&app, &session, &patient, "referral-document", move |reader, _banner| {
        may_file(reader)?;
        Ok(exchange::documents::file_outgoing(&reader.access, &id, ccda::DocumentType::Referral, &custodian)?)
    })
    .await?;
    Ok(match filed {
        Ok(reference) => Redirect::to(&format!("/app/patients/{patient}?sent={reference}")).into_response(),
        Err(closed) => (StatusCode::FORBIDDEN, closed).into_response(),
    })
}

/// `GET /app/patients/{id}/documents/{reference}`: a document kept on the record (the
/// attachment of one of the patient's DocumentReferences), as a download.
pub(crate) async fn download_document(
    State(app): State<WebApp>,
    session: Session,
    Path((patient, reference)): Path<(String, String)>,
) -> Result<Response, WebError> {
    let id = patient.clone();
    let found = open_chart(&app, &session, &patient, "document-download", move |reader, _banner| {
        let kept = exchange::documents::kept_document(&reader.access, &id, &reference)?;
        let (xml, kind) = (kept.bytes, kept.kind);
        Ok((xml, format!("{kind}-{id}-{reference}.xml")))
    })
    .await?;
    Ok(match found {
        Ok((xml, filename)) => attachment(xml, &filename),
        Err(closed) => (StatusCode::FORBIDDEN, closed).into_response(),
    })
}
