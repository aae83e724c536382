//! Accounts and their API keys (`Accounts`): what is written reads back whole, a key is found by
//! its digest only, and what was never written reads as nothing.

use otpgate::account::{key_digest, mint_key, Account, AccountId, Role};
use otpgate::clock::Clock;

use crate::on_every_store;
use crate::stores::{stores, Backend};

async fn an_account_reads_back_as_it_was_written(backend: Backend) {
    let stores = stores(backend).await;
    let account = Account {
        id: stores.account.clone(),
        name: "Shop & Co, Zürich".into(),
        created_ms: stores.clock.now_ms(),
        code_length: 8,
    };
    let records = &stores.accounts;
    assert_eq!(records.get_account(&account.id).await.unwrap(), None);
    records.insert_account(&account).await.unwrap();
    assert_eq!(
        records.get_account(&account.id).await.unwrap(),
        Some(account)
    );
    let stranger = AccountId::random(&stores.rng).unwrap();
    assert_eq!(records.get_account(&stranger).await.unwrap(), None);
}

async fn a_key_is_found_by_its_digest_with_its_account_and_role(backend: Backend) {
    let stores = stores(backend).await;
    let records = &stores.accounts;
    let now = stores.clock.now_ms();
    let owner = mint_key(&stores.rng, &stores.account, Role::Owner, now).unwrap();
    let partner = mint_key(&stores.rng, &stores.account, Role::Partner, now + 1).unwrap();
    for minted in [&owner, &partner] {
        let digest = key_digest(&minted.secret);
        assert_eq!(records.find_api_key(&digest).await.unwrap(), None);
        records.insert_api_key(&minted.record).await.unwrap();
    }
    for minted in [&owner, &partner] {
        let found = records.find_api_key(&key_digest(&minted.secret)).await;
        assert_eq!(found.unwrap().as_ref(), Some(&minted.record));
    }
    let unknown = key_digest("ogk_never-minted");
    assert_eq!(records.find_api_key(&unknown).await.unwrap(), None);
}

on_every_store!(
    an_account_reads_back_as_it_was_written,
    a_key_is_found_by_its_digest_with_its_account_and_role,
);
