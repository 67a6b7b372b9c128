//! The notification service binary.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    http_kit::service::main(
        service_notification::SPEC,
        service_notification::api::routes,
    )
    .await?;
    Ok(())
}
