//! `send_notification(notification_id, recipient, channel, subject, body, url=None)`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Contract, Submission, SEND_NOTIFICATION};
#[cfg(feature = "openapi")]
use crate::schema::Email;
use crate::validation::{Fields, ValidationErrors};

const MAX_TEXT: usize = 16 * 1024;
const MAX_URL: usize = 2048;

/// How a notification is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// Recorded in Redis, readable through the notification service.
    Log,
    /// POSTed as JSON to `url` with an `Idempotency-Key` header.
    Webhook,
}

/// `send_notification(notification_id, recipient, channel, subject, body, url=None)`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendNotification {
    /// The notification's id, also its task's idempotency key.
    pub notification_id: String,
    /// The e-mail address it goes to.
    pub recipient: String,
    /// How it is delivered.
    pub channel: Channel,
    /// Its subject line.
    pub subject: String,
    /// Its text.
    pub body: String,
    /// The receiver a webhook notification is POSTed to (webhooks only).
    pub url: Option<String>,
}

impl Contract for SendNotification {
    const NAME: &'static str = SEND_NOTIFICATION;
    const PARAMS: &'static [&'static str] = &[
        "notification_id",
        "recipient",
        "channel",
        "subject",
        "body",
        "url",
    ];

    fn from_kwargs(kw: &Map<String, Value>) -> Result<Self, ValidationErrors> {
        let mut f = Fields::new();
        let notification_id = f.id(kw, "", "notification_id");
        let recipient = f.email(kw, "", "recipient");
        let channel = match f.string(kw, "", "channel", 32).as_str() {
            "log" => Some(Channel::Log),
            "webhook" => Some(Channel::Webhook),
            "" => None,
            _ => {
                f.error("channel", "must be one of: log, webhook");
                None
            }
        };
        let subject = f.string(kw, "", "subject", 1000);
        let body = f.string(kw, "", "body", MAX_TEXT);
        let url = f.optional_string(kw, "", "url", MAX_URL);
        if let Some(u) = url.as_deref().filter(|u| !u.is_empty()) {
            if !(u.starts_with("http://") || u.starts_with("https://"))
                || u.contains(char::is_whitespace)
            {
                f.error("url", "must be an http:// or https:// URL");
            }
        }
        if channel == Some(Channel::Webhook) && url.is_none() {
            f.error("url", "is required for the webhook channel");
        }
        f.finish(SendNotification {
            notification_id,
            recipient,
            channel: channel.unwrap_or(Channel::Log),
            subject,
            body,
            url,
        })
    }
}

/// Notification ids the shop sends on its own (an order's confirmation) begin with this; no one
/// may submit one, so no one can pre-claim or spoof a customer's confirmation.
pub const RESERVED_PREFIX: &str = "order-";

/// The id of the confirmation of `order_id`: in the reserved namespace, and at most
/// `MAX_ID_LEN` long for every valid order id.
pub fn confirmation_id(order_id: &str) -> String {
    [RESERVED_PREFIX, order_id, "-confirmed"].concat()
}

impl Submission for SendNotification {
    const KIND: &'static str = "notification";
    const ID_FIELD: &'static str = "notification_id";
    fn id(&self) -> &str {
        &self.notification_id
    }

    fn check_submitted(&self) -> Result<(), ValidationErrors> {
        if self.notification_id.starts_with(RESERVED_PREFIX) {
            return Err(ValidationErrors::single(
                "notification_id",
                format!("ids starting with {RESERVED_PREFIX:?} are reserved for the shop's own notifications"),
            ));
        }
        Ok(())
    }
}

/// The schema of a notification id a client may choose: an [`Id`](crate::schema::Id) not
/// starting with [`RESERVED_PREFIX`]. Only a schema (no value has this type).
#[cfg(feature = "openapi")]
pub enum NotificationId {}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for NotificationId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::schema::id_not_starting_with(
            RESERVED_PREFIX,
            crate::validation::MAX_ID_LEN,
            &format!("An id, not starting with `{RESERVED_PREFIX}` (the shop's own)."),
        )
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for NotificationId {}

/// The body of `POST /notifications`: a `send_notification` whose `notification_id` may be left
/// out (one is then generated). `url` is required for the webhook channel. Unknown fields are
/// ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewNotification {
    /// Absent or null: a UUID is generated. Submitting an id again returns the task accepted for
    /// it.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<NotificationId>))]
    pub notification_id: Option<String>,
    /// The e-mail address it goes to.
    #[cfg_attr(feature = "openapi", schema(value_type = Email))]
    pub recipient: String,
    /// How it is delivered.
    pub channel: Channel,
    /// Not blank.
    #[cfg_attr(feature = "openapi", schema(max_length = 1000, pattern = "\\S"))]
    pub subject: String,
    /// Not blank.
    #[cfg_attr(feature = "openapi", schema(max_length = 16384, pattern = "\\S"))]
    pub body: String,
    /// An `http://` or `https://` URL without white space; required for the webhook channel.
    #[cfg_attr(
        feature = "openapi",
        schema(max_length = 2048, pattern = "^https?://\\S*$")
    )]
    pub url: Option<String>,
}
