//! RESP2 (being written).
