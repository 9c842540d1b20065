#![cfg(test)]

mod external_client;
mod handlers;
mod packet;
mod random_file;
mod rrq;
mod sessions;
