// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {PoLChain} from "../src/PoLChain.sol";
import {SignerQuorum} from "../src/SignerQuorum.sol";
import {QuorumSigning} from "./utils/QuorumSigning.sol";

/// @dev Drives a quorum chain with honest and forged quorums (too few signatures, outsiders, duplicates,
/// high s, signatures for another chain id or another contract), signed and owner set changes, replayed
/// updates and equivocation reports, and keeps ghost state of what should have happened.
contract QuorumHandler is QuorumSigning {
    enum Forgery {
        None,
        Outsider,
        OtherChainId,
        OtherContract,
        Duplicate,
        HighS
    }

    PoLChain public immutable chain;
    address public immutable owner;
    address[] public pool; // every key the handler holds, ascending; the set is always a subset

    uint64 public ghostHeight;
    uint256 public ghostNonce;
    uint256 public underThresholdAccepted; // a block with fewer than t valid member signatures landed
    uint256 public forgedAccepted; // a block with a forged entry landed
    uint256 public crossDomainAccepted; // a signature made for another chain id or contract counted
    uint256 public validRefused; // t or more valid signatures, nothing forged, and still refused
    uint256 public replayedUpdatesAccepted;
    uint256 public ownerChangesAfterBootstrap;
    uint256 public removals;
    uint256 public keptEquivocators;

    address[] internal _lastSigners;
    uint8 internal _lastThreshold;
    uint256 internal _lastNonce;
    bytes internal _lastSignatures;
    bool internal _haveUpdate;

    constructor(PoLChain c, address o, address[] memory keys) {
        chain = c;
        owner = o;
        for (uint256 i; i < keys.length; ++i) pool.push(keys[i]);
    }

    /// @dev Lets the handler learn the keys the test made (the mapping lives per contract).
    function learnKey(address a, uint256 key) external {
        keyOf[a] = key;
    }

    // ─── blocks ───

    function _header() internal view returns (PoLChain.Header memory h, bytes32 hash) {
        uint32[] memory p = new uint32[](4);
        for (uint32 i; i < 4; ++i) p[i] = 2 * i + 1;
        uint32 correct = chain.tipCorrect();
        h = PoLChain.Header({
            parent: chain.tipLink(),
            taskSpecHash: chain.TASK_SPEC_HASH(),
            difficulty: chain.difficulty(),
            height: chain.tipHeight() + 1,
            weightsHash: keccak256(abi.encode("w", chain.tipHeight())),
            newWeightsHash: keccak256(abi.encode("w'", chain.tipHeight())),
            segmentRoot: keccak256(abi.encode("segment", chain.tipHeight())),
            indices: p,
            correctBefore: correct,
            correctAfter: correct + 1,
            redraw: 0,
            miner: address(0x1111)
        });
        hash = keccak256(abi.encode(h));
    }

    function _send(PoLChain.Header memory h, bytes memory sigs) internal returns (bool ok) {
        try chain.submitBlockSigned(
            h.height, h.weightsHash, h.newWeightsHash, h.segmentRoot, h.indices, h.correctBefore, h.correctAfter,
            h.redraw, h.miner, sigs
        ) {
            ok = true;
        } catch {}
    }

    /// @dev A quorum being built: the set, its signatures by place, which places sign, how many of them are
    /// valid member signatures, and the forgery made (None if there was no room for it).
    struct Draft {
        address[] set;
        uint8 t;
        bytes[] sigs;
        uint256 mask;
        uint256 counted;
        Forgery forgery;
    }

    /// @dev `valid` members (chosen by `seed`) sign correctly; `forgery` adds one forged entry at another
    /// member's place, or turns a valid one into a duplicate or a high-s signature.
    function submitBlock(uint256 seed, uint8 valid, uint8 forgery) external {
        (PoLChain.Header memory h, bytes32 hash) = _header();
        Draft memory d = _draft(hash, seed, valid);
        d.forgery = Forgery(forgery % 6);
        _forge(d, hash, seed);
        bool ok = _send(h, pack(d.t, d.set, d.mask, d.sigs));
        if (ok) {
            ++ghostHeight;
            if (d.counted < d.t) ++underThresholdAccepted;
            if (d.forgery != Forgery.None) ++forgedAccepted;
            if (d.forgery == Forgery.OtherChainId || d.forgery == Forgery.OtherContract) ++crossDomainAccepted;
        } else if (d.forgery == Forgery.None && d.counted >= d.t) {
            ++validRefused;
        }
    }

    function _draft(bytes32 hash, uint256 seed, uint8 valid) internal view returns (Draft memory d) {
        (d.set, d.t,) = chain.signerSet();
        d.counted = bound(valid, 0, d.set.length);
        d.mask = maskOf(d.set.length, d.counted, seed);
        d.sigs = new bytes[](d.set.length);
        bytes32 digest = chain.blockDigest(hash);
        for (uint256 i; i < d.set.length; ++i) {
            if ((d.mask >> i) & 1 == 1) d.sigs[i] = compact(keyOf[d.set[i]], digest);
        }
    }

    function _forge(Draft memory d, bytes32 hash, uint256 seed) internal view {
        uint256 n = d.set.length;
        if (d.forgery == Forgery.HighS || d.forgery == Forgery.Duplicate) {
            // Corrupt a valid entry, which then no longer counts.
            uint256 at = _place(d.mask, n, seed, true);
            uint256 other = _otherSigned(d.mask, n, at);
            if (at == NONE || (d.forgery == Forgery.Duplicate && other == NONE)) {
                d.forgery = Forgery.None;
                return;
            }
            d.sigs[at] = d.forgery == Forgery.HighS ? withS(d.sigs[at], HALF_ORDER + 1 + seed % 1000) : d.sigs[other];
            --d.counted;
        } else if (d.forgery != Forgery.None) {
            // A forged signature at a member's place that had none.
            uint256 place = _place(d.mask, n, seed, false);
            if (place == NONE) {
                d.forgery = Forgery.None;
                return;
            }
            d.sigs[place] = _forged(d.forgery, d.set[place], hash, seed);
            d.mask |= 1 << place;
        }
    }

    uint256 internal constant NONE = type(uint256).max;

    /// @dev A member place, from `seed` on, whose bit in `mask` is `signed`.
    function _place(uint256 mask, uint256 n, uint256 seed, bool signed) internal pure returns (uint256) {
        for (uint256 k; k < n; ++k) {
            uint256 i = (seed % n + k) % n;
            if (((mask >> i) & 1 == 1) == signed) return i;
        }
        return NONE;
    }

    function _otherSigned(uint256 mask, uint256 n, uint256 at) internal pure returns (uint256) {
        for (uint256 i; i < n; ++i) {
            if (i != at && (mask >> i) & 1 == 1) return i;
        }
        return NONE;
    }

    function _forged(Forgery f, address member, bytes32 hash, uint256 seed) internal view returns (bytes memory) {
        if (f == Forgery.Outsider) {
            // A key the handler holds that is not in the set (or a stranger's).
            for (uint256 k; k < pool.length; ++k) {
                address a = pool[(seed % pool.length + k) % pool.length];
                if (!chain.isSigner(a)) return compact(keyOf[a], chain.blockDigest(hash));
            }
            return compact(uint256(keccak256(abi.encode("stranger", seed))) % (SECP256K1_ORDER - 1) + 1, chain.blockDigest(hash));
        }
        uint256 chainId = block.chainid;
        address verifying = address(chain);
        if (f == Forgery.OtherChainId) chainId = block.chainid + 1 + seed % 1000;
        else verifying = address(uint160(uint256(keccak256(abi.encode("twin", seed)))));
        // The member's own, honest signature, but for another domain.
        return compact(keyOf[member], blockDigest(domainSeparator(chainId, verifying), hash));
    }

    /// @dev Every member signs the next block for another chain id, or a twin contract; none may count.
    function replayAcrossDomains(uint256 seed, bool otherChain) external {
        (address[] memory set, uint8 t,) = chain.signerSet();
        (PoLChain.Header memory h, bytes32 hash) = _header();
        bytes32 sep = otherChain
            ? domainSeparator(block.chainid + 1 + seed % 1000, address(chain))
            : domainSeparator(block.chainid, address(uint160(uint256(keccak256(abi.encode("twin", seed))))));
        if (_send(h, signedBy(t, set, (1 << set.length) - 1, blockDigest(sep, hash)))) {
            ++crossDomainAccepted;
            ++ghostHeight;
        }
    }

    /// @dev Signatures made before a chain id change (a fork) must not count after it.
    function forkChainId(uint64 delta) external {
        (address[] memory set, uint8 t,) = chain.signerSet();
        (PoLChain.Header memory h,) = _header();
        bytes memory sigs = signedBy(t, set, (1 << set.length) - 1, chain.blockDigest(keccak256(abi.encode(h))));
        uint256 original = block.chainid;
        vm.chainId(original + 1 + delta % 1000);
        bool ok = _send(h, sigs);
        vm.chainId(original);
        if (ok) {
            ++crossDomainAccepted;
            ++ghostHeight;
        }
    }

    // ─── set changes ───

    function _subset(uint256 seed, uint8 size) internal view returns (address[] memory s) {
        size = uint8(bound(size, 1, pool.length));
        uint256 mask = maskOf(pool.length, size, seed);
        s = new address[](size);
        uint256 j;
        for (uint256 i; i < pool.length; ++i) {
            if ((mask >> i) & 1 == 1) s[j++] = pool[i];
        }
    }

    function updateSigned(uint256 seed, uint8 size, uint8 t, uint8 signing) external {
        address[] memory next = _subset(seed, size);
        t = uint8(bound(t, 1, next.length));
        (address[] memory set, uint8 curT, uint256 nonce) = chain.signerSet();
        signing = uint8(bound(signing, 0, set.length));
        bytes memory sigs = signedBy(
            curT, set, maskOf(set.length, signing, seed >> 8), chain.signerSetUpdateDigest(next, t, nonce)
        );
        try chain.updateSignerSet(next, t, nonce, sigs) {
            if (signing < curT) ++underThresholdAccepted;
            ++ghostNonce;
            (_lastSigners, _lastThreshold, _lastNonce, _lastSignatures, _haveUpdate) = (next, t, nonce, sigs, true);
        } catch {
            if (signing >= curT) ++validRefused;
        }
    }

    function replayLastUpdate() external {
        if (!_haveUpdate) return;
        try chain.updateSignerSet(_lastSigners, _lastThreshold, _lastNonce, _lastSignatures) {
            ++replayedUpdatesAccepted;
        } catch {}
    }

    function ownerSets(uint256 seed, uint8 size, uint8 t) external {
        address[] memory next = _subset(seed, size);
        t = uint8(bound(t, 1, next.length));
        bool open = chain.bootstrapActive();
        vm.prank(owner);
        try chain.setSignerSet(next, t) {
            if (!open) ++ownerChangesAfterBootstrap;
            ++ghostNonce;
        } catch {
            if (open) ++validRefused;
        }
    }

    function endBootstrap(uint8 coin) external {
        if (coin % 8 != 0) return; // rarely: the rest of the run tests the signed path alone
        vm.prank(owner);
        try chain.endBootstrap() {} catch {}
    }

    // ─── equivocation ───

    function equivocate(uint256 seed, uint32 redraw) external {
        (address[] memory set, uint8 t,) = chain.signerSet();
        address m = set[seed % set.length];
        (PoLChain.Header memory a,) = _header();
        (PoLChain.Header memory b,) = _header();
        a.redraw = redraw;
        b.redraw = redraw;
        b.newWeightsHash = keccak256(abi.encode("conflict", seed));
        bytes memory sa = compact(keyOf[m], chain.blockDigest(keccak256(abi.encode(a))));
        bytes memory sb = compact(keyOf[m], chain.blockDigest(keccak256(abi.encode(b))));
        try chain.reportEquivocation(a, sa, b, sb) {}
        catch {
            ++validRefused; // sound evidence against a member is always taken
            return;
        }
        if (set.length > t) {
            ++removals;
            ++ghostNonce;
            if (chain.isSigner(m)) ++validRefused; // should have left the set
        } else {
            ++keptEquivocators;
        }
    }

    function warp(uint16 dt) external {
        vm.warp(block.timestamp + dt % 600);
    }
}

/// forge-config: default.invariant.fail-on-revert = true
contract PoLChainQuorumInvariantTest is QuorumSigning {
    PoLChain internal chain;
    QuorumHandler internal handler;
    address internal constant OWNER = address(0x0B0B);

    function setUp() public {
        vm.warp(1_000_000);
        address[] memory keys = makeMembers("pool", 8);
        address[] memory genesisSet = new address[](3);
        (genesisSet[0], genesisSet[1], genesisSet[2]) = (keys[1], keys[4], keys[6]);
        chain = new PoLChain(
            PoLChain.Genesis({
                taskSpecHash: keccak256("task"),
                weightsHash: keccak256("w0"),
                numParams: 3842,
                batchSize: 4,
                correct: 100,
                rules: PoLChain.Rules.ChainBound,
                sabotageTolerance: 5,
                difficulty: 4,
                minDifficulty: 1,
                maxDifficulty: 32,
                targetBlockTime: 10,
                halfLife: 40,
                redrawAfter: 60,
                attester: address(0),
                owner: OWNER
            }),
            SignerQuorum.SignerSet(genesisSet, 2)
        );
        handler = new QuorumHandler(chain, OWNER, keys);
        for (uint256 i; i < keys.length; ++i) handler.learnKey(keys[i], keyOf[keys[i]]);
    }

    struct FuzzSelector {
        address addr;
        bytes4[] selectors;
    }

    /// @dev Only the handler is driven (the chain directly would only see random, unsigned calls).
    function targetContracts() public view returns (address[] memory t) {
        t = new address[](1);
        t[0] = address(handler);
    }

    function targetSelectors() public view returns (FuzzSelector[] memory t) {
        bytes4[] memory s = new bytes4[](9);
        s[0] = QuorumHandler.submitBlock.selector;
        s[1] = QuorumHandler.replayAcrossDomains.selector;
        s[2] = QuorumHandler.forkChainId.selector;
        s[3] = QuorumHandler.updateSigned.selector;
        s[4] = QuorumHandler.replayLastUpdate.selector;
        s[5] = QuorumHandler.ownerSets.selector;
        s[6] = QuorumHandler.endBootstrap.selector;
        s[7] = QuorumHandler.equivocate.selector;
        s[8] = QuorumHandler.warp.selector;
        t = new FuzzSelector[](1);
        t[0] = FuzzSelector(address(handler), s);
    }

    function invariant_NoBlockWithFewerThanThresholdSignatures() public view {
        assertEq(handler.underThresholdAccepted(), 0, "nothing landed or changed with fewer than t signatures");
        assertEq(handler.forgedAccepted(), 0, "no forged, duplicate or high-s entry was accepted");
        assertEq(chain.tipHeight(), handler.ghostHeight(), "height counts exactly the accepted blocks");
    }

    function invariant_NoSignatureReusedAcrossDomains() public view {
        assertEq(handler.crossDomainAccepted(), 0, "no signature for another chain id or contract counted");
    }

    function invariant_SetNeverBelowThreshold() public view {
        (address[] memory set, uint8 t, uint256 nonce) = chain.signerSet();
        assertTrue(t >= 1 && set.length >= t && set.length <= 32, "1 <= t <= n <= 32");
        for (uint256 i = 1; i < set.length; ++i) assertTrue(set[i] > set[i - 1], "strictly ascending");
        assertEq(chain.signerSetCommitment(), chain.computeSignerSetCommitment(set, t), "commitment is the set's");
        assertEq(nonce, handler.ghostNonce(), "the nonce counts every change");
        assertEq(handler.ownerChangesAfterBootstrap(), 0, "the owner's power ended with the bootstrap");
    }

    function invariant_ValidQuorumsAccepted() public view {
        assertEq(handler.validRefused(), 0, "t valid signatures always count; an equivocator above t always leaves");
        assertEq(handler.replayedUpdatesAccepted(), 0, "no signed update applied twice");
    }
}
