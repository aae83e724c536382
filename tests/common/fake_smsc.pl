#!/usr/bin/perl
# A fake SMSC for the SMPP provider's tests, built on Net::SMPP's server side (Debian's
# libnet-smpp-perl), an SMPP 3.4 implementation independent of the crates under test.
#
# It listens on a free loopback port and prints "PORT <n>" on standard output; it accepts any
# bind, answers enquire_link, answers each submit_sm with a message id and, when the submit_sm
# asks for one (registered_delivery bit 0), sends a delivery receipt as deliver_sm: the SMPP 3.4
# appendix B text, or with --tlvs the receipted_message_id and message_state TLVs alone. A
# receipt answered with an error status is sent again (every 200 ms, at most 50 times), as real
# SMSCs redeliver. Every PDU it takes is written to the --log file as one JSON line.
#
# Options:
#   --log FILE        where the JSON lines go (required)
#   --throttle N      answer the first N submit_sm with ESME_RTHROTTLED (0x58)
#   --queue-full N    answer the first N submit_sm with ESME_RMSGQFUL (0x14)
#   --drop-after N    close the connection, unanswered, on the N-th submit_sm (once)
#   --tlvs            receipts carry the TLVs and no text
#   --stat STAT       the receipt's stat (default DELIVRD)
#   --stray-receipt   on each bind, send a receipt for a message id nobody was given
#   --mute-enquire    never answer enquire_link (a silent link)
#   --hold-receipts   keep receipts until the file <log>.release exists
use strict;
use warnings;
use Getopt::Long;
use IO::Select;
use IO::Handle;
use JSON::PP;
use Net::SMPP;
use Time::HiRes qw(time);

my ($log_path, $throttle, $queue_full, $drop_after, $tlvs, $stat, $stray, $mute, $hold) =
    (undef, 0, 0, 0, 0, 'DELIVRD', 0, 0, 0);
GetOptions(
    'log=s'        => \$log_path,
    'throttle=i'   => \$throttle,
    'queue-full=i' => \$queue_full,
    'drop-after=i' => \$drop_after,
    'tlvs'         => \$tlvs,
    'stat=s'       => \$stat,
    'stray-receipt' => \$stray,
    'mute-enquire' => \$mute,
    'hold-receipts' => \$hold,
) or die "bad options\n";
die "--log is required\n" unless $log_path;

open(my $log, '>>', $log_path) or die "cannot open $log_path: $!\n";
$log->autoflush(1);
my $json = JSON::PP->new->canonical;
sub note { print {$log} $json->encode({@_}), "\n" }
# Net::SMPP warns when a peer closes mid-read (a dropped session, the gateway stopping): logged.
$SIG{__WARN__} = sub { my $text = join('', @_); chomp $text; note(event => 'warning', text => $text) };

my $listener = Net::SMPP->new_listen('127.0.0.1', port => 0, smpp_version => 0x34)
    or die "cannot listen: $!\n";
$| = 1;
print 'PORT ', $listener->sockport, "\n";

my $select = IO::Select->new($listener);
my ($submits, $next_id) = (0, 0);
my %pending;    # "fileno:seq" => receipt waiting for its deliver_sm_resp, or its next try
my @retries;    # receipts to send again: [due, connection, receipt]
my %bound;      # fileno => [kind, system_id] of each bound connection

# Receipts go to the connection that may take deliver_sm: the submitting one when it is a
# transceiver, else a receiver bound with the same system_id (none yet: tried again shortly).
sub send_receipt {
    my ($smpp, $receipt) = @_;
    if ($hold && !-e "$log_path.release") {
        push @retries, [time + 0.2, $smpp, $receipt];
        return;
    }
    my $bind = $bound{ fileno($smpp) } // ['', ''];
    if ($bind->[0] eq 'transmitter') {
        my ($receiver) = grep {
            my $other = $bound{ fileno($_) };
            $other && $other->[0] eq 'receiver' && $other->[1] eq $bind->[1]
        } grep { $_ != $listener } $select->handles;
        if (!$receiver) {
            push @retries, [time + 0.2, $smpp, $receipt];
            return;
        }
        $smpp = $receiver;
    }
    my @tlv = $tlvs
        ? (receipted_message_id => $receipt->{id} . "\0", message_state => pack('C', $receipt->{state}))
        : ();
    my $seq = $smpp->deliver_sm(
        source_addr_ton => 1, source_addr_npi => 1, source_addr => $receipt->{to},
        dest_addr_ton => 0, dest_addr_npi => 0, destination_addr => $receipt->{from},
        esm_class => 0x04, data_coding => 0, short_message => $tlvs ? '' : $receipt->{text},
        @tlv, async => 1,
    );
    $pending{ fileno($smpp) . ':' . $seq } = $receipt if defined $seq;
}

my %state_of = (DELIVRD => 2, EXPIRED => 3, DELETED => 4, UNDELIV => 5, ACCEPTD => 6, REJECTD => 8);

while (1) {
    my $wait = 1;
    if (@retries) {
        my ($soonest) = sort { $a <=> $b } map { $_->[0] } @retries;
        $wait = $soonest - time;
        $wait = 0 if $wait < 0;
    }
    for my $ready ($select->can_read($wait)) {
        if ($ready == $listener) {
            my $connection = $listener->accept or next;
            $select->add($connection);
            next;
        }
        my $pdu = $ready->read_pdu;
        if (!$pdu) {
            delete $bound{ fileno($ready) };
            $select->remove($ready);
            close $ready;
            note(event => 'closed');
            next;
        }
        my $cmd = $pdu->{cmd};
        if ($cmd == 0x00000009 || $cmd == 0x00000001 || $cmd == 0x00000002) {
            my %kind = (9 => 'transceiver', 1 => 'receiver', 2 => 'transmitter');
            note(event => 'bind', kind => $kind{$cmd}, system_id => $pdu->{system_id},
                 password => $pdu->{password}, interface_version => $pdu->{interface_version});
            $bound{ fileno($ready) } = [$kind{$cmd}, $pdu->{system_id}];
            my $resp = $cmd == 9 ? 'bind_transceiver_resp' : $cmd == 1 ? 'bind_receiver_resp' : 'bind_transmitter_resp';
            $ready->$resp(seq => $pdu->{seq}, system_id => 'fakesmsc');
            if ($stray && $cmd != 2) {
                send_receipt($ready, {
                    id => 'stray000001', to => '4915100000000', from => 'Acme', state => 2, tries => 0,
                    text => 'id:stray000001 sub:001 dlvrd:001 submit date:2612030800 done date:2612030800 stat:DELIVRD err:000 text:',
                });
            }
        } elsif ($cmd == 0x00000015) {
            note(event => 'enquire_link');
            $ready->enquire_link_resp(seq => $pdu->{seq}) unless $mute;
        } elsif ($cmd == 0x00000006) {
            note(event => 'unbind');
            $ready->unbind_resp(seq => $pdu->{seq});
        } elsif ($cmd == 0x80000005) {
            my $receipt = delete $pending{ fileno($ready) . ':' . $pdu->{seq} };
            note(event => 'deliver_sm_resp', status => $pdu->{status}, id => $receipt ? $receipt->{id} : undef,
                 over => ($bound{ fileno($ready) } // [''])->[0]);
            if ($receipt && $pdu->{status} != 0 && ++$receipt->{tries} < 50) {
                push @retries, [time + 0.2, $ready, $receipt];
            }
        } elsif ($cmd == 0x00000004) {
            $submits++;
            my %submit = (
                event => 'submit_sm', destination => $pdu->{destination_addr},
                source => $pdu->{source_addr}, source_ton => $pdu->{source_addr_ton},
                data_coding => $pdu->{data_coding}, esm_class => $pdu->{esm_class},
                registered_delivery => $pdu->{registered_delivery},
                short_message => unpack('H*', $pdu->{short_message}),
            );
            if ($drop_after && $submits == $drop_after) {
                $drop_after = 0;
                note(%submit, answer => 'dropped');
                delete $bound{ fileno($ready) };
                $select->remove($ready);
                close $ready;
                next;
            }
            my $status = 0;
            if ($throttle > 0) { $throttle--; $status = 0x58 }
            elsif ($queue_full > 0) { $queue_full--; $status = 0x14 }
            if ($status) {
                note(%submit, answer => $status);
                $ready->submit_sm_resp(seq => $pdu->{seq}, status => $status, message_id => '');
                next;
            }
            my $id = sprintf('smsc%06d', ++$next_id);
            note(%submit, answer => 0, message_id => $id);
            $ready->submit_sm_resp(seq => $pdu->{seq}, message_id => $id);
            if ($pdu->{registered_delivery} & 0x01) {
                my $stamp = '2612030800';
                send_receipt($ready, {
                    id => $id, to => $pdu->{destination_addr}, from => $pdu->{source_addr},
                    state => $state_of{$stat} // 7, tries => 0,
                    text => "id:$id sub:001 dlvrd:001 submit date:$stamp done date:$stamp stat:$stat err:000 text:",
                });
            }
        } else {
            note(event => 'other', cmd => sprintf('0x%08x', $cmd));
        }
    }
    my $now = time;
    my @due = grep { $_->[0] <= $now } @retries;
    @retries = grep { $_->[0] > $now } @retries;
    for my $retry (@due) {
        my (undef, $connection, $receipt) = @$retry;
        send_receipt($connection, $receipt) if $select->exists($connection);
    }
}
