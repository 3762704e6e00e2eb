//! The one boundary the rest of the workspace uses: plain-data requests and events.
