//! The order service binary.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    http_kit::service::main(service_order::SPEC, service_order::api::routes).await?;
    Ok(())
}
