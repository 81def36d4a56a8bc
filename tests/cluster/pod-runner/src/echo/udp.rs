//! echo-basic's UDP mode: every datagram is answered with `{"request": ..., pod context}`.

use serde::Serialize;
use tokio::net::UdpSocket;

use super::PodContext;

#[derive(Debug, Serialize)]
pub struct UdpAnswer<'a> {
    pub request: String,
    #[serde(flatten)]
    pub context: &'a PodContext,
}

pub async fn serve(socket: UdpSocket, context: PodContext) {
    let mut buffer = [0u8; 1024];
    loop {
        let (n, from) = match socket.recv_from(&mut buffer).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("Error reading UDP: {e}");
                continue;
            }
        };
        let answer = UdpAnswer {
            request: String::from_utf8_lossy(&buffer[..n]).into_owned(),
            context: &context,
        };
        match serde_json::to_vec(&answer) {
            Ok(payload) => {
                if let Err(e) = socket.send_to(&payload, from).await {
                    eprintln!("Error writing UDP: {e}");
                }
            }
            Err(e) => eprintln!("Error marshaling UDP response: {e}"),
        }
    }
}
