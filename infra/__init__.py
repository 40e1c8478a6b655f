"""Starting and configuring the services fangxian runs on: Apache Kafka (KRaft), the ClickHouse
server, Tansu, and the topics. Used by the test fixtures and the ``fangxian topics`` command;
production runs the same services from ``docker-compose.yml``."""
