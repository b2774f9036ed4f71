//! The operator's managed-broker configuration, loaded by a real RabbitMQ (Debian's): the
//! node accepts the rabbitmq.conf settings the operator writes, creates the synchronizers'
//! user from the definitions (password hash and all), creates no `guest`, and takes its
//! memory budget from the container limit.

use std::time::Duration;

use tinysns_operator::build::rabbitmq::{self, config};
use tinysns_stack::free_port;
use tinysns_stack::rabbit::{BrokerSetup, RabbitMq};

const LIMIT: u64 = 768 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_broker_loads_the_operators_configuration() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("managed-broker");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("test directory");
    let password = rabbitmq::generate_password();
    let definitions = dir.join(config::DEFINITIONS_FILE);
    std::fs::write(&definitions, config::definitions(&password).to_string()).expect("definitions");
    let conf = config::node_settings(Some(LIMIT)).replace(
        &format!("{}/{}", config::DEFINITIONS_DIR, config::DEFINITIONS_FILE),
        &definitions.display().to_string(),
    );

    let mut broker = RabbitMq::new(
        &dir.join("rabbitmq"),
        free_port().expect("a port"),
        free_port().expect("a port"),
        None,
    )
    .expect("Debian's rabbitmq-server is installed");
    broker
        .set_up(&BrokerSetup {
            conf,
            user: rabbitmq::USERNAME.to_string(),
            password: password.clone(),
        })
        .expect("configured");
    // `start` logs in as the operator's user: it only returns once that works.
    broker
        .start(Duration::from_secs(60))
        .await
        .expect("the broker starts and the user logs in");

    let connect =
        |url: String| async move { lapin::Connection::connect(&url, lapin::ConnectionProperties::default()).await };
    assert!(
        connect(broker.url_as(rabbitmq::USERNAME, "not-the-password"))
            .await
            .is_err(),
        "a wrong password is refused"
    );
    assert!(
        connect(broker.url_as("guest", "guest")).await.is_err(),
        "no guest user on a broker that loads definitions"
    );
    let total = broker
        .ctl(&["eval", "vm_memory_monitor:get_total_memory()."])
        .expect("rabbitmqctl eval");
    assert_eq!(
        total.trim(),
        (LIMIT / 100 * config::MEMORY_BUDGET_PERCENT).to_string(),
        "the memory budget is 80% of the limit"
    );
    broker.stop();
}
