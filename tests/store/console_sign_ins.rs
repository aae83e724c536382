//! The console store's last sign-ins (the Users page's "Last sign-in"): read back in the order
//! asked, replaced by a later sign-in, bounded in total where a person already recorded is still
//! replaced and a new one is skipped (`Room::Full`) rather than failing a sign-in.

use otpgate::account::user::UserId;
use otpgate::console::store::{Principal, Room};

use crate::on_every_store;
use crate::stores::{stores, Backend, Stores};

const DAY: u64 = 86_400_000;

fn person(stores: &Stores, user: &str) -> Principal {
    Principal::User {
        account: stores.account.clone(),
        user: UserId::parse(user).unwrap(),
    }
}

async fn a_later_sign_in_replaces_the_earlier_and_unknown_people_read_as_never(backend: Backend) {
    let stores = stores(backend).await;
    let console = &stores.console;
    let (ada, bea) = (person(&stores, "ada"), person(&stores, "bea"));
    assert_eq!(
        console.last_sign_ins(&[]).await.unwrap(),
        Vec::<Option<u64>>::new()
    );
    assert_eq!(
        console.record_sign_in(&ada, 1_000, DAY, 10).await.unwrap(),
        Room::Stored
    );
    assert_eq!(
        console
            .last_sign_ins(&[bea.clone(), ada.clone(), Principal::Root])
            .await
            .unwrap(),
        [None, Some(1_000), None]
    );
    assert_eq!(
        console.record_sign_in(&ada, 2_000, DAY, 10).await.unwrap(),
        Room::Stored
    );
    assert_eq!(
        console.last_sign_ins(&[ada, bea]).await.unwrap(),
        [Some(2_000), None]
    );
}

async fn the_records_are_bounded_in_total_but_a_recorded_person_is_still_replaced(
    backend: Backend,
) {
    let stores = stores(backend).await;
    let console = &stores.console;
    let (ada, bea, cyd) = (
        person(&stores, "ada"),
        person(&stores, "bea"),
        person(&stores, "cyd"),
    );
    for who in [&ada, &bea] {
        assert_eq!(
            console.record_sign_in(who, 1_000, DAY, 2).await.unwrap(),
            Room::Stored
        );
    }
    assert_eq!(
        console.record_sign_in(&cyd, 1_000, DAY, 2).await.unwrap(),
        Room::Full,
        "a new person past the bound is not recorded"
    );
    assert_eq!(
        console.record_sign_in(&ada, 3_000, DAY, 2).await.unwrap(),
        Room::Stored,
        "a recorded person is replaced in place"
    );
    assert_eq!(
        console.last_sign_ins(&[ada, bea, cyd]).await.unwrap(),
        [Some(3_000), Some(1_000), None]
    );
}

on_every_store!(
    a_later_sign_in_replaces_the_earlier_and_unknown_people_read_as_never,
    the_records_are_bounded_in_total_but_a_recorded_person_is_still_replaced,
);
