use sshsign::hsm::pkcs11::*;
fn main() {
    let ctx = module::load(std::path::Path::new("/usr/lib/softhsm/libsofthsm2.so")).unwrap();
    let so = secrecy::SecretString::from("so-secret");
    let pin = secrecy::SecretString::from("user-secret");
    module::init_token(&ctx, module::InitSlot::FirstFree, "a1", &so, &pin).unwrap();
    println!(
        "{:?}",
        module::list_slots(&ctx)
            .unwrap()
            .iter()
            .map(|s| s.label.clone())
            .collect::<Vec<_>>()
    );
    std::process::Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            "b2",
            "--so-pin",
            "1234",
            "--pin",
            "1234",
        ])
        .status()
        .unwrap();
    println!(
        "{:?}",
        module::list_slots(&ctx)
            .unwrap()
            .iter()
            .map(|s| s.label.clone())
            .collect::<Vec<_>>()
    );
    module::init_token(&ctx, module::InitSlot::FirstFree, "a3", &so, &pin).unwrap();
    println!(
        "{:?}",
        module::list_slots(&ctx)
            .unwrap()
            .iter()
            .map(|s| s.label.clone())
            .collect::<Vec<_>>()
    );
}
