//! The console's store: invitations and ceremonies taken once, bounds per person and in total
//! (a taken entry frees its room), "Sign out everywhere" ending one person's sessions only, the
//! passkey counter that must advance, and whether the operator has a passkey.

use otpgate::account::user::UserId;
use otpgate::account::AccountId;
use otpgate::console::store::{
    Bounds, ConsoleCredential, Invitation, Principal, Room, SessionRecord,
};

use crate::on_every_store;
use crate::stores::{stores, Backend, Stores};

const HOUR: u64 = 3_600_000;
const ROOMY: Bounds = Bounds {
    per_principal: 10,
    total: 1_000,
};

fn person(stores: &Stores, user: &str) -> Principal {
    Principal::User {
        account: stores.account.clone(),
        user: UserId::parse(user).unwrap(),
    }
}

fn digest(n: u8) -> [u8; 32] {
    [n; 32]
}

fn invitation(stores: &Stores, principal: Principal) -> Invitation {
    use otpgate::clock::Clock;
    Invitation {
        principal,
        expires_ms: stores.clock.now_ms() + 24 * HOUR,
    }
}

fn session(principal: Principal) -> SessionRecord {
    SessionRecord {
        principal,
        created_ms: 1,
        last_seen_ms: 1,
        csrf: "token".into(),
    }
}

async fn an_invitation_and_a_ceremony_are_taken_once(backend: Backend) {
    let stores = stores(backend).await;
    let console = &stores.console;
    let ada = invitation(&stores, person(&stores, "ada"));
    let room = console
        .put_invitation(&digest(1), &ada, 24 * HOUR, ROOMY)
        .await
        .unwrap();
    assert_eq!(room, Room::Stored);
    assert_eq!(
        console.invitation(&digest(1)).await.unwrap(),
        Some(ada.clone())
    );
    assert_eq!(
        console.take_invitation(&digest(1)).await.unwrap(),
        Some(ada)
    );
    assert_eq!(console.take_invitation(&digest(1)).await.unwrap(), None);
    assert_eq!(console.invitation(&digest(1)).await.unwrap(), None);

    let room = console
        .put_ceremony(b"challenge", "{}", HOUR, 10)
        .await
        .unwrap();
    assert_eq!(room, Room::Stored);
    assert_eq!(
        console
            .take_ceremony(b"challenge")
            .await
            .unwrap()
            .as_deref(),
        Some("{}")
    );
    assert_eq!(console.take_ceremony(b"challenge").await.unwrap(), None);
}

async fn invitations_are_bounded_per_person_and_a_taken_one_frees_its_room(backend: Backend) {
    let stores = stores(backend).await;
    let console = &stores.console;
    let bounds = Bounds {
        per_principal: 2,
        total: 3,
    };
    let ada = invitation(&stores, person(&stores, "ada"));
    for n in 1..=2 {
        let room = console
            .put_invitation(&digest(n), &ada, HOUR, bounds)
            .await
            .unwrap();
        assert_eq!(room, Room::Stored);
    }
    let full = console
        .put_invitation(&digest(3), &ada, HOUR, bounds)
        .await
        .unwrap();
    assert_eq!(full, Room::Full, "two per person");
    assert_eq!(
        console.invitation(&digest(3)).await.unwrap(),
        None,
        "nothing stored"
    );
    let bob = invitation(&stores, person(&stores, "bob"));
    let room = console
        .put_invitation(&digest(4), &bob, HOUR, bounds)
        .await
        .unwrap();
    assert_eq!(room, Room::Stored);
    let eve = invitation(&stores, person(&stores, "eve"));
    let full = console
        .put_invitation(&digest(5), &eve, HOUR, bounds)
        .await
        .unwrap();
    assert_eq!(full, Room::Full, "three in all");

    console.take_invitation(&digest(1)).await.unwrap();
    let room = console
        .put_invitation(&digest(6), &ada, HOUR, bounds)
        .await
        .unwrap();
    assert_eq!(
        room,
        Room::Stored,
        "the used invitation no longer counts for ada"
    );
}

async fn signing_out_everywhere_ends_one_persons_sessions_only(backend: Backend) {
    let stores = stores(backend).await;
    let console = &stores.console;
    let (ada, bob) = (person(&stores, "ada"), person(&stores, "bob"));
    for (n, who) in [(1, &ada), (2, &ada), (3, &bob), (4, &Principal::Root)] {
        let room = console
            .put_session(&digest(n), &session(who.clone()), HOUR, ROOMY)
            .await
            .unwrap();
        assert_eq!(room, Room::Stored);
    }
    console.touch_session(&digest(1), 99, HOUR).await.unwrap();
    assert_eq!(
        console
            .session(&digest(1))
            .await
            .unwrap()
            .unwrap()
            .last_seen_ms,
        99
    );
    assert_eq!(console.delete_sessions_of(&ada).await.unwrap(), 2);
    assert_eq!(console.session(&digest(1)).await.unwrap(), None);
    assert_eq!(console.session(&digest(2)).await.unwrap(), None);
    assert!(console.session(&digest(3)).await.unwrap().is_some());
    assert!(console.session(&digest(4)).await.unwrap().is_some());
    console.delete_session(&digest(3)).await.unwrap();
    assert_eq!(console.session(&digest(3)).await.unwrap(), None);
    // A session of another account's user of the same name is another person.
    let other = Principal::User {
        account: AccountId::parse("AC00000000000000000000000000000000").unwrap(),
        user: UserId::parse("bob").unwrap(),
    };
    console
        .put_session(&digest(5), &session(other), HOUR, ROOMY)
        .await
        .unwrap();
    assert_eq!(console.delete_sessions_of(&bob).await.unwrap(), 0);
    assert!(console.session(&digest(5)).await.unwrap().is_some());
}

async fn a_console_passkeys_counter_only_moves_forward(backend: Backend) {
    let stores = stores(backend).await;
    let console = &stores.console;
    assert!(!console.has_root_credential().await.unwrap());
    let credential = ConsoleCredential {
        id: "cred-1".into(),
        principal: Principal::Root,
        alg: -7,
        key: "a2V5".into(),
        counter: 3,
        created_ms: 1,
    };
    assert_eq!(
        console.put_credential(&credential, ROOMY).await.unwrap(),
        Room::Stored
    );
    assert!(console.has_root_credential().await.unwrap());
    assert_eq!(
        console.credential("cred-1").await.unwrap(),
        Some(credential.clone())
    );
    assert!(console.advance_counter("cred-1", 4).await.unwrap());
    assert!(
        !console.advance_counter("cred-1", 4).await.unwrap(),
        "a repeated counter: a clone"
    );
    assert!(!console.advance_counter("cred-1", 2).await.unwrap());
    assert_eq!(
        console.credential("cred-1").await.unwrap().unwrap().counter,
        4
    );
    assert_eq!(console.credential("nobody").await.unwrap(), None);
}

on_every_store!(
    an_invitation_and_a_ceremony_are_taken_once,
    invitations_are_bounded_per_person_and_a_taken_one_frees_its_room,
    signing_out_everywhere_ends_one_persons_sessions_only,
    a_console_passkeys_counter_only_moves_forward,
);
