//! What every controller shares: the API client, one informer per kind for the
//! whole process, and the Event recorder.

use client::Client;
use client::runtime::{EventRecorder, SharedInformers};

pub struct Context {
    pub client: Client,
    pub informers: SharedInformers,
    pub recorder: EventRecorder,
}

impl Context {
    pub fn new(client: Client, host: &str) -> Self {
        let recorder = EventRecorder::new(&client, "controller-manager", host);
        Context { informers: SharedInformers::new(&client), client, recorder }
    }
}
