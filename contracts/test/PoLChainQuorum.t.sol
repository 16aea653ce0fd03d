// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {PoLChain} from "../src/PoLChain.sol";
import {SignerQuorum} from "../src/SignerQuorum.sol";
import {PoLChainFixture} from "./PoLChain.t.sol";
import {QuorumSigning} from "./utils/QuorumSigning.sol";

/// @dev A chain-bound chain in quorum mode with `size()` members; blocks are relayed by an account that is
/// not a member.
abstract contract QuorumFixture is PoLChainFixture, QuorumSigning {
    address internal constant RELAYER = address(0x5E1A7);
    address[] internal members;
    uint8 internal threshold;

    function rules() internal pure virtual override returns (PoLChain.Rules) {
        return PoLChain.Rules.ChainBound;
    }

    function size() internal pure virtual returns (uint256 n, uint8 t) {
        return (3, 2);
    }

    function setUp() public virtual override {
        vm.warp(T0);
        vm.prevrandao(DEPLOY_RANDAO);
        (uint256 n, uint8 t) = size();
        members = makeMembers("member", n);
        threshold = t;
        chain = new PoLChain(quorumGenesis(), SignerQuorum.SignerSet(members, t));
    }

    function quorumGenesis() internal pure returns (PoLChain.Genesis memory g) {
        g = genesis();
        g.attester = address(0);
    }

    function digestOf(Sub memory s) internal view returns (bytes32) {
        return chain.blockDigest(keccak256(abi.encode(headerOf(s))));
    }

    function sigsFor(Sub memory s, uint256 mask) internal view returns (bytes memory) {
        return signedBy(threshold, members, mask, digestOf(s));
    }

    function callSigned(Sub memory s, bytes memory sigs) internal returns (bytes32) {
        return chain.submitBlockSigned(
            s.height, s.weightsHash, s.newWeightsHash, s.segmentRoot, s.indices, s.correctBefore, s.correctAfter,
            s.redraw, s.miner, sigs
        );
    }

    function relay(Sub memory s, bytes memory sigs) internal returns (bytes32) {
        vm.prank(RELAYER);
        return callSigned(s, sigs);
    }

    function allMembers() internal view returns (uint256) {
        return (1 << members.length) - 1;
    }

    /// @dev `sigs[i]` per member for `mask` (empty where the bit is clear).
    function sigArray(bytes32 digest, uint256 mask) internal view returns (bytes[] memory sigs) {
        sigs = new bytes[](members.length);
        for (uint256 i; i < members.length; ++i) {
            if ((mask >> i) & 1 == 1) sigs[i] = compact(keyOf[members[i]], digest);
        }
    }

    function nextBlock(uint256 i) internal view returns (Sub memory) {
        return nextSub(keccak256(abi.encode("w", i, chain.tipHeight())), chain.tipCorrect(), 1);
    }

    function extendSigned(uint256 n) internal {
        for (uint256 i; i < n; ++i) {
            vm.warp(block.timestamp + TARGET);
            Sub memory s = nextBlock(i);
            relay(s, sigsFor(s, allMembers()));
        }
    }

    function headerWith(bytes32 newWeights, uint32 redraw) internal view returns (PoLChain.Header memory h) {
        Sub memory s = nextSub(newWeights, chain.tipCorrect(), 1);
        s.redraw = redraw;
        h = headerOf(s);
    }

    function signHeader(address member, PoLChain.Header memory h) internal view returns (bytes memory) {
        return compact(keyOf[member], chain.blockDigest(keccak256(abi.encode(h))));
    }
}

/// @dev Genesis, modes, submission and refusals of a 2-of-3 quorum.
contract PoLChainQuorumTest is QuorumFixture {
    // ─── genesis and modes ───

    function test_GenesisQuorum() public view {
        (address[] memory set, uint8 t, uint256 nonce) = chain.signerSet();
        assertEq(set.length, 3, "n");
        for (uint256 i; i < 3; ++i) assertEq(set[i], members[i], "member");
        assertEq(t, 2, "t");
        assertEq(nonce, 0, "nonce");
        assertTrue(chain.QUORUM() && chain.bootstrapActive(), "quorum, bootstrap");
        assertEq(chain.attester(), address(0), "no attester");
        assertTrue(!chain.isAttester(address(0)) && chain.isSigner(members[1]) && !chain.isSigner(RELAYER), "roles");
        assertEq(chain.signerSetCommitment(), chain.computeSignerSetCommitment(set, t), "commitment");
        assertEq(chain.DOMAIN_SEPARATOR(), domainSeparator(block.chainid, address(chain)), "domain");
    }

    function testFuzz_GenesisQuorum(uint8 n, uint8 t, uint256 salt) public {
        n = uint8(bound(n, 1, 32));
        t = uint8(bound(t, 1, n));
        address[] memory m = makeMembers(string(abi.encode(salt)), n);
        PoLChain c = new PoLChain(quorumGenesis(), SignerQuorum.SignerSet(m, t));
        (address[] memory set, uint8 gotT,) = c.signerSet();
        assertEq(set.length, n, "n");
        assertEq(gotT, t, "t");
        assertEq(c.signerSetCommitment(), c.computeSignerSetCommitment(m, t), "commitment");
    }

    function test_RevertWhen_GenesisQuorumWithAttester() public {
        vm.expectRevert(abi.encodeWithSelector(PoLChain.InvalidGenesis.selector, "attester set in quorum mode"));
        new PoLChain(genesis(), SignerQuorum.SignerSet(members, 2));
    }

    function testFuzz_RevertWhen_GenesisQuorumWithAttester(address a) public {
        vm.assume(a != address(0));
        PoLChain.Genesis memory g = quorumGenesis();
        g.attester = a;
        vm.expectRevert(abi.encodeWithSelector(PoLChain.InvalidGenesis.selector, "attester set in quorum mode"));
        new PoLChain(g, SignerQuorum.SignerSet(members, 2));
    }

    function test_RevertWhen_GenesisThresholdWithoutSigners() public {
        vm.expectRevert(abi.encodeWithSelector(PoLChain.InvalidGenesis.selector, "threshold without signers"));
        new PoLChain(genesis(), SignerQuorum.SignerSet(new address[](0), 1));
    }

    function testFuzz_RevertWhen_GenesisThresholdWithoutSigners(uint8 t) public {
        vm.assume(t != 0);
        vm.expectRevert(abi.encodeWithSelector(PoLChain.InvalidGenesis.selector, "threshold without signers"));
        new PoLChain(genesis(), SignerQuorum.SignerSet(new address[](0), t));
    }

    function test_RevertWhen_GenesisThresholdOutOfRange() public {
        vm.expectRevert(abi.encodeWithSelector(SignerQuorum.ThresholdOutOfRange.selector, 4, 3));
        new PoLChain(quorumGenesis(), SignerQuorum.SignerSet(members, 4));
    }

    function testFuzz_RevertWhen_GenesisThresholdOutOfRange(uint8 t) public {
        vm.assume(t == 0 || t > 3);
        vm.expectRevert(abi.encodeWithSelector(SignerQuorum.ThresholdOutOfRange.selector, t, 3));
        new PoLChain(quorumGenesis(), SignerQuorum.SignerSet(members, t));
    }

    function test_RevertWhen_GenesisSignersNotAscending() public {
        address[] memory m = members;
        (m[1], m[2]) = (m[2], m[1]);
        vm.expectRevert(abi.encodeWithSelector(SignerQuorum.SignerSetNotAscending.selector, 2));
        new PoLChain(quorumGenesis(), SignerQuorum.SignerSet(m, 2));
    }

    function testFuzz_RevertWhen_GenesisSignersNotAscending(uint8 n, uint8 at, bool zero) public {
        n = uint8(bound(n, 2, 32));
        at = uint8(bound(at, 1, n - 1));
        address[] memory m = makeMembers("fuzz", n);
        if (zero) m[0] = address(0); // the address ecrecover returns on failure may never be a member
        else m[at] = m[at - 1]; // a member twice
        vm.expectRevert(abi.encodeWithSelector(SignerQuorum.SignerSetNotAscending.selector, zero ? 0 : at));
        new PoLChain(quorumGenesis(), SignerQuorum.SignerSet(m, 1));
    }

    function test_RevertWhen_GenesisTooManySigners() public {
        address[] memory m = makeMembers("many", 33);
        vm.expectRevert(abi.encodeWithSelector(SignerQuorum.SignerCountOutOfRange.selector, 33));
        new PoLChain(quorumGenesis(), SignerQuorum.SignerSet(m, 1));
    }

    function testFuzz_RevertWhen_GenesisTooManySigners(uint8 n) public {
        n = uint8(bound(n, 33, 64));
        address[] memory m = makeMembers("many", n);
        vm.expectRevert(abi.encodeWithSelector(SignerQuorum.SignerCountOutOfRange.selector, n));
        new PoLChain(quorumGenesis(), SignerQuorum.SignerSet(m, 1));
    }

    function test_RevertWhen_SubmitBlockInQuorumMode() public {
        Sub memory s = nextBlock(0);
        vm.prank(members[0]); // not even a member may attest alone
        vm.expectRevert(SignerQuorum.QuorumMode.selector);
        call(s);
    }

    function testFuzz_RevertWhen_SubmitBlockInQuorumMode(address who) public {
        Sub memory s = nextBlock(0);
        vm.prank(who);
        vm.expectRevert(SignerQuorum.QuorumMode.selector);
        call(s);
    }

    function test_RevertWhen_SetAttesterInQuorumMode() public {
        vm.prank(OWNER);
        vm.expectRevert(SignerQuorum.QuorumMode.selector);
        chain.setAttester(ATTESTER);
    }

    function testFuzz_RevertWhen_SetAttesterInQuorumMode(address a) public {
        vm.assume(a != address(0));
        vm.prank(OWNER);
        vm.expectRevert(SignerQuorum.QuorumMode.selector);
        chain.setAttester(a);
    }

    // ─── submission ───

    function test_SignedBlockLandsFromAnyRelayer() public {
        Sub memory s = nextBlock(0);
        bytes32 want = keccak256(abi.encode(headerOf(s)));
        assertEq(relay(s, sigsFor(s, 0x3)), want, "returned hash");
        assertEq(chain.tipHeight(), 1, "height");
        assertEq(chain.latestModelHash(), s.newWeightsHash, "model");
        assertEq(chain.tipCorrect(), s.correctAfter, "count");
        assertEq(chain.signerSetCommitment(), chain.computeSignerSetCommitment(members, 2), "authority kept");
    }

    function testFuzz_SignedBlockLands(address relayer, uint256 mask, uint8 blocks) public {
        blocks = uint8(bound(blocks, 1, 5));
        for (uint256 i; i < blocks; ++i) {
            uint256 m = bound(uint256(keccak256(abi.encode(mask, i))), 1, 7);
            if (popcount(m) < 2) m |= m == 4 ? 1 : 4; // any two or three of the three
            Sub memory s = nextBlock(i);
            bytes32 want = keccak256(abi.encode(headerOf(s)));
            vm.prank(relayer);
            assertEq(callSigned(s, sigsFor(s, m)), want, "hash");
        }
        assertEq(chain.tipHeight(), blocks, "height");
    }

    function test_SignedBlockEmitsBlockAttested() public {
        vm.prevrandao(keccak256("r"));
        Sub memory s = nextBlock(0);
        PoLChain.Header memory h = headerOf(s);
        bytes memory sigs = sigsFor(s, 0x5);
        vm.expectEmit(true, false, false, true);
        emit PoLChain.BlockAttested(keccak256(abi.encode(h)), uint256(keccak256("r")), h);
        relay(s, sigs);
    }

    function testFuzz_SignedBlockEmitsBlockAttested(bytes32 randao, address miner) public {
        vm.prevrandao(randao);
        Sub memory s = nextBlock(0);
        s.miner = miner;
        PoLChain.Header memory h = headerOf(s);
        bytes memory sigs = sigsFor(s, 0x6);
        vm.expectEmit(true, false, false, true);
        emit PoLChain.BlockAttested(keccak256(abi.encode(h)), uint256(randao), h);
        relay(s, sigs);
    }

    function test_SignedBlockObeysEveryRule() public {
        Sub memory s = nextSub(keccak256("w1"), G_CORRECT - 5, 4); // regresses the tip
        bytes memory sigs = sigsFor(s, 0x3);
        vm.expectRevert(abi.encodeWithSelector(PoLChain.TipRegressed.selector, G_CORRECT, G_CORRECT - 1));
        relay(s, sigs);
        s = nextBlock(0);
        (s.indices[1], s.indices[2]) = (s.indices[2], s.indices[1]);
        sigs = sigsFor(s, 0x3);
        vm.expectRevert(abi.encodeWithSelector(PoLChain.IndicesNotAscending.selector, 2));
        relay(s, sigs);
        s = nextBlock(0);
        s.redraw = 1;
        sigs = sigsFor(s, 0x3);
        vm.expectRevert(abi.encodeWithSelector(PoLChain.RedrawTooEarly.selector, 1, T0 + REDRAW_AFTER, T0));
        relay(s, sigs);
        s = nextBlock(0);
        s.correctAfter = s.correctBefore;
        sigs = sigsFor(s, 0x3);
        vm.expectRevert(
            abi.encodeWithSelector(PoLChain.AccuracyNotImproved.selector, s.correctBefore, s.correctBefore)
        );
        relay(s, sigs);
    }

    function testFuzz_RevertWhen_SignedBlockWrongHeight(uint64 height) public {
        vm.assume(height != 1);
        Sub memory s = nextBlock(0);
        s.height = height;
        bytes memory sigs = sigsFor(s, 0x3); // signed as it is: the height rule still refuses it
        vm.expectRevert(abi.encodeWithSelector(PoLChain.WrongHeight.selector, 1, height));
        relay(s, sigs);
    }

    function test_RevertWhen_SignaturesReusedForTheNextBlock() public {
        Sub memory s = nextBlock(0);
        bytes memory sigs = sigsFor(s, 0x3);
        relay(s, sigs);
        // The same fields one height later: another parent link, so another block hash.
        s.height = 2;
        vm.expectRevert(
            abi.encodeWithSelector(SignerQuorum.InvalidSigner.selector, 0, recoverAt(s, sigs, 0))
        );
        relay(s, sigs);
    }

    function testFuzz_RevertWhen_SignaturesForAnotherBlock(bytes32 w, bytes32 other) public {
        vm.assume(w != other);
        Sub memory s = nextSub(w, chain.tipCorrect(), 1);
        Sub memory t = nextSub(other, chain.tipCorrect(), 1);
        bytes memory sigs = sigsFor(t, 0x3);
        vm.expectRevert(abi.encodeWithSelector(SignerQuorum.InvalidSigner.selector, 0, recoverAt(s, sigs, 0)));
        relay(s, sigs);
    }

    /// @dev The signer the contract recovers from signature `index` of `sigs` for block `s`.
    function recoverAt(Sub memory s, bytes memory sigs, uint256 index) internal view returns (address) {
        bytes memory sig = new bytes(64);
        for (uint256 i; i < 64; ++i) sig[i] = sigs[5 + 64 * index + i];
        return recoverCompact(digestOf(s), sig);
    }

    function test_RevertWhen_TooFewSignatures() public {
        Sub memory s = nextBlock(0);
        bytes memory sigs = sigsFor(s, 0x2);
        vm.expectRevert(abi.encodeWithSelector(SignerQuorum.TooFewSignatures.selector, 1, 2));
        relay(s, sigs);
    }

    function testFuzz_RevertWhen_TooFewSignatures(uint8 which) public {
        uint256 mask = which % 4 == 3 ? 0 : 1 << (which % 4); // none, or any one
        Sub memory s = nextBlock(0);
        bytes memory sigs = sigsFor(s, mask);
        vm.expectRevert(abi.encodeWithSelector(SignerQuorum.TooFewSignatures.selector, popcount(mask), 2));
        relay(s, sigs);
    }

    function test_RevertWhen_DuplicateSigner() public {
        Sub memory s = nextBlock(0);
        bytes[] memory sigs = sigArray(digestOf(s), 0x1);
        sigs[1] = sigs[0]; // member 0's signature in member 1's place
        vm.expectRevert(abi.encodeWithSelector(SignerQuorum.DuplicateSigner.selector, 1, members[0]));
        relay(s, pack(2, members, 0x3, sigs));
    }

    function testFuzz_RevertWhen_DuplicateSigner(uint8 from, uint8 to) public {
        from = uint8(bound(from, 0, 1));
        to = uint8(bound(to, from + 1, 2));
        Sub memory s = nextBlock(0);
        bytes[] memory sigs = sigArray(digestOf(s), 1 << from);
        sigs[to] = sigs[from];
        vm.expectRevert(abi.encodeWithSelector(SignerQuorum.DuplicateSigner.selector, 1, members[from]));
        relay(s, pack(2, members, (1 << from) | (1 << to), sigs));
    }

    function test_RevertWhen_SignersNotAscending() public {
        Sub memory s = nextBlock(0);
        bytes[] memory sigs = sigArray(digestOf(s), 0x3);
        (sigs[0], sigs[1]) = (sigs[1], sigs[0]);
        vm.expectRevert(abi.encodeWithSelector(SignerQuorum.SignersNotAscending.selector, 0));
        relay(s, pack(2, members, 0x3, sigs));
    }

    function testFuzz_RevertWhen_SignersNotAscending(uint8 a, uint8 b) public {
        a = uint8(bound(a, 0, 1));
        b = uint8(bound(b, a + 1, 2));
        Sub memory s = nextBlock(0);
        bytes[] memory sigs = sigArray(digestOf(s), allMembers());
        (sigs[a], sigs[b]) = (sigs[b], sigs[a]);
        // Signature number a (at member a's place) is member b's: a member, out of order.
        vm.expectRevert(abi.encodeWithSelector(SignerQuorum.SignersNotAscending.selector, a));
        relay(s, pack(2, members, allMembers(), sigs));
    }

    function test_RevertWhen_SignatureForAnotherChainId() public {
        Sub memory s = nextBlock(0);
        bytes32 foreign = blockDigest(domainSeparator(1, address(chain)), keccak256(abi.encode(headerOf(s))));
        bytes memory sigs = signedBy(2, members, 0x3, foreign);
        vm.expectRevert(abi.encodeWithSelector(SignerQuorum.InvalidSigner.selector, 0, recoverAt(s, sigs, 0)));
        relay(s, sigs);
    }

    function testFuzz_RevertWhen_SignatureForAnotherChainId(uint256 chainId) public {
        vm.assume(chainId != block.chainid);
        Sub memory s = nextBlock(0);
        bytes32 foreign = blockDigest(domainSeparator(chainId, address(chain)), keccak256(abi.encode(headerOf(s))));
        bytes memory sigs = signedBy(2, members, 0x3, foreign);
        vm.expectRevert(abi.encodeWithSelector(SignerQuorum.InvalidSigner.selector, 0, recoverAt(s, sigs, 0)));
        relay(s, sigs);
    }

    function test_RevertWhen_SignatureForAnotherContract() public {
        // A twin deployment: same genesis, same members, so the very same block hash.
        PoLChain twin = new PoLChain(quorumGenesis(), SignerQuorum.SignerSet(members, 2));
        Sub memory s = nextBlock(0);
        bytes32 h = keccak256(abi.encode(headerOf(s)));
        bytes memory sigs = signedBy(2, members, 0x3, twin.blockDigest(h));
        vm.expectRevert(abi.encodeWithSelector(SignerQuorum.InvalidSigner.selector, 0, recoverAt(s, sigs, 0)));
        relay(s, sigs);
    }

    function testFuzz_RevertWhen_SignatureForAnotherContract(address other) public {
        vm.assume(other != address(chain));
        Sub memory s = nextBlock(0);
        bytes32 foreign = blockDigest(domainSeparator(block.chainid, other), keccak256(abi.encode(headerOf(s))));
        bytes memory sigs = signedBy(2, members, 0x3, foreign);
        vm.expectRevert(abi.encodeWithSelector(SignerQuorum.InvalidSigner.selector, 0, recoverAt(s, sigs, 0)));
        relay(s, sigs);
    }

    function test_RevertWhen_ChainIdChangesAfterSigning() public {
        // A fork: signatures made for chain 31337 must not count on the forked chain.
        Sub memory s = nextBlock(0);
        bytes memory sigs = sigsFor(s, 0x3);
        bytes32 before = chain.DOMAIN_SEPARATOR();
        vm.chainId(777);
        assertTrue(chain.DOMAIN_SEPARATOR() == domainSeparator(777, address(chain)), "domain follows the chain id");
        assertTrue(chain.DOMAIN_SEPARATOR() != before, "new domain");
        vm.expectRevert(abi.encodeWithSelector(SignerQuorum.InvalidSigner.selector, 0, recoverAt(s, sigs, 0)));
        relay(s, sigs);
    }

    function testFuzz_RevertWhen_ChainIdChangesAfterSigning(uint64 chainId) public {
        vm.assume(chainId != block.chainid && chainId != 0);
        Sub memory s = nextBlock(0);
        bytes memory sigs = sigsFor(s, 0x3);
        vm.chainId(chainId);
        vm.expectRevert(abi.encodeWithSelector(SignerQuorum.InvalidSigner.selector, 0, recoverAt(s, sigs, 0)));
        relay(s, sigs);
        bytes memory fresh = sigsFor(s, 0x3); // signed for the new chain id: accepted
        relay(s, fresh);
        assertEq(chain.tipHeight(), 1, "re-signed block lands");
    }

    function test_RevertWhen_OutsiderSignature() public {
        Sub memory s = nextBlock(0);
        address outsider = makeKey("outsider", 0);
        bytes[] memory sigs = sigArray(digestOf(s), 0x1);
        sigs[1] = compact(keyOf[outsider], digestOf(s));
        vm.expectRevert(abi.encodeWithSelector(SignerQuorum.InvalidSigner.selector, 1, outsider));
        relay(s, pack(2, members, 0x3, sigs));
    }

    function testFuzz_RevertWhen_OutsiderSignature(uint256 salt, uint8 place) public {
        place = uint8(bound(place, 0, 2));
        address outsider = makeKey("outsider", salt);
        vm.assume(!chain.isSigner(outsider));
        Sub memory s = nextBlock(0);
        bytes[] memory sigs = sigArray(digestOf(s), allMembers());
        sigs[place] = compact(keyOf[outsider], digestOf(s));
        vm.expectRevert(abi.encodeWithSelector(SignerQuorum.InvalidSigner.selector, place, outsider));
        relay(s, pack(2, members, allMembers(), sigs));
    }

    function test_RevertWhen_MalleableSignature() public {
        Sub memory s = nextBlock(0);
        bytes[] memory sigs = sigArray(digestOf(s), 0x3);
        sigs[1] = withS(sigs[1], HALF_ORDER + 1);
        vm.expectRevert(abi.encodeWithSelector(SignerQuorum.MalleableSignature.selector, 1));
        relay(s, pack(2, members, 0x3, sigs));
    }

    function testFuzz_RevertWhen_MalleableSignature(uint8 which, uint256 highS) public {
        which = uint8(bound(which, 0, 2));
        highS = bound(highS, HALF_ORDER + 1, (1 << 255) - 1);
        Sub memory s = nextBlock(0);
        bytes[] memory sigs = sigArray(digestOf(s), allMembers());
        sigs[which] = withS(sigs[which], highS);
        vm.expectRevert(abi.encodeWithSelector(SignerQuorum.MalleableSignature.selector, which));
        relay(s, pack(2, members, allMembers(), sigs));
    }

    /// @dev A compact signature can carry a malleable twin only when n - s < 2^255, which an honest key hits
    /// with probability about 2^-128; so build one without a key: a signature (r = Gx, low s) recovers some
    /// account A for the next block, the owner makes A the only member, and the twin (n - s, other parity)
    /// recovers A too. The twin is refused, the low form lands.
    function test_RevertWhen_MalleableTwinOfAValidSignature() public {
        _twinAttest(HALF_ORDER);
    }

    function testFuzz_RevertWhen_MalleableTwinOfAValidSignature(uint256 lowS) public {
        _twinAttest(bound(lowS, SECP256K1_ORDER - (1 << 255) + 1, HALF_ORDER));
    }

    function _twinAttest(uint256 lowS) internal {
        uint256 gx = 0x79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798;
        Sub memory s = nextBlock(0);
        bytes32 digest = digestOf(s);
        address a = ecrecover(digest, 27, bytes32(gx), bytes32(lowS));
        assertEq(ecrecover(digest, 28, bytes32(gx), bytes32(SECP256K1_ORDER - lowS)), a, "the twin recovers A too");
        address[] memory only = new address[](1);
        only[0] = a;
        vm.prank(OWNER);
        chain.setSignerSet(only, 1);
        bytes memory twin = abi.encodePacked(uint8(1), uint32(1), bytes32(gx), bytes32((1 << 255) | (SECP256K1_ORDER - lowS)));
        vm.expectRevert(abi.encodeWithSelector(SignerQuorum.MalleableSignature.selector, 0));
        relay(s, twin);
        relay(s, abi.encodePacked(uint8(1), uint32(1), bytes32(gx), bytes32(lowS)));
        assertEq(chain.tipHeight(), 1, "the low-s form lands");
    }

    function test_RevertWhen_MalformedSignatures() public {
        Sub memory s = nextBlock(0);
        bytes memory sigs = sigsFor(s, 0x3);
        bytes memory cut = new bytes(sigs.length - 1);
        for (uint256 i; i < cut.length; ++i) cut[i] = sigs[i];
        vm.expectRevert(abi.encodeWithSelector(SignerQuorum.MalformedSignatures.selector, cut.length));
        relay(s, cut);
    }

    function testFuzz_RevertWhen_MalformedSignatures(uint8 length) public {
        Sub memory s = nextBlock(0);
        bytes memory sigs = sigsFor(s, 0x3); // 5 + 64 + 64 + 20 bytes
        length = uint8(bound(length, 0, sigs.length - 1));
        bytes memory cut = new bytes(length);
        for (uint256 i; i < length; ++i) cut[i] = sigs[i];
        // Every prefix breaks an entry, or ends before a member its bitmap names, or leaves the last one out.
        if (length == 5 + 64 + 64) {
            vm.expectRevert(abi.encodeWithSelector(SignerQuorum.WrongSignerCount.selector, 3, 2));
        } else {
            vm.expectRevert(abi.encodeWithSelector(SignerQuorum.MalformedSignatures.selector, length));
        }
        relay(s, cut);
    }

    function test_RevertWhen_WrongThreshold() public {
        Sub memory s = nextBlock(0);
        // A relayer claiming t = 1 to get one signature through.
        bytes memory sigs = signedBy(1, members, 0x1, digestOf(s));
        vm.expectRevert(abi.encodeWithSelector(SignerQuorum.WrongThreshold.selector, 2, 1));
        relay(s, sigs);
    }

    function testFuzz_RevertWhen_WrongThreshold(uint8 t) public {
        vm.assume(t != 2);
        Sub memory s = nextBlock(0);
        bytes memory sigs = signedBy(t, members, allMembers(), digestOf(s));
        vm.expectRevert(abi.encodeWithSelector(SignerQuorum.WrongThreshold.selector, 2, t));
        relay(s, sigs);
    }

    function test_RevertWhen_NonSignerMismatch() public {
        Sub memory s = nextBlock(0);
        address[] memory listed = members;
        listed[2] = RELAYER; // the third member replaced in the listing
        bytes memory sigs = signedBy(2, listed, 0x3, digestOf(s));
        vm.expectRevert(abi.encodeWithSelector(SignerQuorum.NonSignerMismatch.selector, 2, members[2], RELAYER));
        relay(s, sigs);
    }

    function testFuzz_RevertWhen_NonSignerMismatch(address other, uint8 place) public {
        place = uint8(bound(place, 0, 2));
        vm.assume(other != members[place]);
        Sub memory s = nextBlock(0);
        uint256 mask = allMembers() ^ (1 << place);
        bytes[] memory sigs = sigArray(digestOf(s), mask);
        address[] memory listed = members;
        address expected = listed[place];
        listed[place] = other;
        vm.expectRevert(abi.encodeWithSelector(SignerQuorum.NonSignerMismatch.selector, place, expected, other));
        relay(s, pack(2, listed, mask, sigs));
    }

    function test_RevertWhen_WrongSignerCount() public {
        Sub memory s = nextBlock(0);
        bytes memory sigs = bytes.concat(sigsFor(s, 0x3), abi.encodePacked(RELAYER)); // a fourth member listed
        vm.expectRevert(abi.encodeWithSelector(SignerQuorum.WrongSignerCount.selector, 3, 4));
        relay(s, sigs);
    }

    function testFuzz_RevertWhen_WrongSignerCount(uint8 extra) public {
        extra = uint8(bound(extra, 1, 29));
        Sub memory s = nextBlock(0);
        bytes memory sigs = sigsFor(s, 0x3);
        for (uint256 i; i < extra; ++i) sigs = bytes.concat(sigs, abi.encodePacked(address(uint160(i + 1))));
        vm.expectRevert(abi.encodeWithSelector(SignerQuorum.WrongSignerCount.selector, 3, 4));
        relay(s, sigs);
    }

    function test_RevertWhen_SignedCalldataNotCanonical() public {
        Sub memory s = nextBlock(0);
        bytes memory data = abi.encodeCall(
            PoLChain.submitBlockSigned,
            (s.height, s.weightsHash, s.newWeightsHash, s.segmentRoot, s.indices, s.correctBefore, s.correctAfter,
                s.redraw, s.miner, sigsFor(s, 0x3))
        );
        vm.prank(RELAYER);
        (bool ok, bytes memory ret) = address(chain).call(bytes.concat(data, bytes32(0))); // a trailing word
        assertTrue(!ok, "rejected");
        assertEq(ret, abi.encodeWithSelector(PoLChain.NonCanonicalEncoding.selector, data.length + 32), "error");
    }

    function testFuzz_RevertWhen_SignedCalldataNotCanonical(uint256 dirtyIndex, uint8 which) public {
        vm.assume(dirtyIndex > type(uint32).max);
        Sub memory s = nextBlock(0);
        bytes memory data = abi.encodeCall(
            PoLChain.submitBlockSigned,
            (s.height, s.weightsHash, s.newWeightsHash, s.segmentRoot, s.indices, s.correctBefore, s.correctAfter,
                s.redraw, s.miner, sigsFor(s, 0x3))
        );
        uint256 offset = 4 + 32 * (11 + uint256(which % 4)); // one of the four index words
        assembly {
            mstore(add(add(data, 32), offset), dirtyIndex)
        }
        vm.prank(RELAYER);
        (bool ok, bytes memory ret) = address(chain).call(data);
        assertTrue(!ok, "rejected");
        assertEq(ret, abi.encodeWithSelector(PoLChain.NonCanonicalEncoding.selector, data.length), "error");
    }
}

/// @dev Set changes: signed updates with a nonce, the owner's bootstrap phase.
contract PoLChainQuorumSetTest is QuorumFixture {
    function updateSigs(address[] memory next, uint8 t, uint256 nonce, uint256 mask)
        internal
        view
        returns (bytes memory)
    {
        return signedBy(threshold, members, mask, updateDigest(chain.DOMAIN_SEPARATOR(), next, t, nonce));
    }

    function test_SignedSetUpdate() public {
        address[] memory next = makeMembers("next", 4);
        bytes memory sigs = updateSigs(next, 3, 0, 0x5);
        assertEq(chain.signerSetUpdateDigest(next, 3, 0), updateDigest(chain.DOMAIN_SEPARATOR(), next, 3, 0), "digest");
        vm.expectEmit(true, false, false, true);
        emit SignerQuorum.SignerSetChanged(1, 3, next);
        vm.prank(RELAYER);
        chain.updateSignerSet(next, 3, 0, sigs);
        (address[] memory set, uint8 t, uint256 nonce) = chain.signerSet();
        assertEq(set.length, 4, "n");
        assertEq(t, 3, "t");
        assertEq(nonce, 1, "nonce");
        // The new set attests; the old one no longer does.
        members = next;
        threshold = 3;
        Sub memory s = nextBlock(0);
        relay(s, sigsFor(s, 0xb));
        assertEq(chain.tipHeight(), 1, "new set attests");
    }

    function testFuzz_SignedSetUpdate(uint8 n, uint8 t, uint256 salt, uint256 mask) public {
        n = uint8(bound(n, 1, 32));
        t = uint8(bound(t, 1, n));
        address[] memory next = makeMembers(string(abi.encode("next", salt)), n);
        mask = bound(mask, 1, 7);
        if (popcount(mask) < 2) mask = 0x6;
        vm.prank(RELAYER);
        chain.updateSignerSet(next, t, 0, updateSigs(next, t, 0, mask));
        assertEq(chain.signerSetCommitment(), chain.computeSignerSetCommitment(next, t), "commitment moved");
        // Keys of the old set no longer count, even placed where the new members sit.
        Sub memory s = nextBlock(0);
        bytes32 digest = digestOf(s);
        bytes[] memory sigs = new bytes[](n);
        for (uint256 i; i < t; ++i) sigs[i] = compact(keyOf[members[i % 3]], digest);
        vm.expectRevert(abi.encodeWithSelector(SignerQuorum.InvalidSigner.selector, 0, members[0]));
        relay(s, pack(t, next, (1 << t) - 1, sigs));
        // The new members attest.
        members = next;
        threshold = t;
        relay(s, sigsFor(s, (1 << t) - 1));
        assertEq(chain.tipHeight(), 1, "new set attests");
    }

    function test_RevertWhen_SetUpdateReplayed() public {
        address[] memory next = makeMembers("next", 3);
        bytes memory sigs = updateSigs(next, 2, 0, 0x3);
        chain.updateSignerSet(next, 2, 0, sigs);
        vm.expectRevert(abi.encodeWithSelector(SignerQuorum.WrongNonce.selector, 1, 0));
        chain.updateSignerSet(next, 2, 0, sigs);
    }

    function testFuzz_RevertWhen_SetUpdateWrongNonce(uint256 nonce) public {
        vm.assume(nonce != 0);
        address[] memory next = makeMembers("next", 3);
        bytes memory sigs = updateSigs(next, 2, nonce, 0x3);
        vm.expectRevert(abi.encodeWithSelector(SignerQuorum.WrongNonce.selector, 0, nonce));
        chain.updateSignerSet(next, 2, nonce, sigs);
    }

    function test_RevertWhen_SetUpdateTooFewSignatures() public {
        address[] memory next = makeMembers("next", 3);
        bytes memory sigs = updateSigs(next, 1, 0, 0x4);
        vm.expectRevert(abi.encodeWithSelector(SignerQuorum.TooFewSignatures.selector, 1, 2));
        chain.updateSignerSet(next, 1, 0, sigs);
    }

    function testFuzz_RevertWhen_SetUpdateTooFewSignatures(uint8 which) public {
        address[] memory next = makeMembers("next", 1);
        uint256 mask = 1 << (which % 3);
        bytes memory sigs = updateSigs(next, 1, 0, mask);
        vm.expectRevert(abi.encodeWithSelector(SignerQuorum.TooFewSignatures.selector, 1, 2));
        chain.updateSignerSet(next, 1, 0, sigs);
    }

    function test_RevertWhen_SetUpdateSignedForAnotherSet() public {
        address[] memory agreed = makeMembers("agreed", 3);
        address[] memory sent = makeMembers("sent", 3);
        bytes memory sigs = updateSigs(agreed, 2, 0, 0x3);
        bytes32 digest = chain.signerSetUpdateDigest(sent, 2, 0);
        address recovered = recoverCompact(digest, slice64(sigs, 5));
        vm.expectRevert(abi.encodeWithSelector(SignerQuorum.InvalidSigner.selector, 0, recovered));
        chain.updateSignerSet(sent, 2, 0, sigs);
    }

    function testFuzz_RevertWhen_SetUpdateSignedForAnotherThreshold(uint8 t) public {
        t = uint8(bound(t, 1, 3));
        address[] memory next = makeMembers("next", 3);
        uint8 sentT = t == 3 ? 1 : t + 1;
        bytes memory sigs = updateSigs(next, t, 0, 0x3);
        address recovered = recoverCompact(chain.signerSetUpdateDigest(next, sentT, 0), slice64(sigs, 5));
        vm.expectRevert(abi.encodeWithSelector(SignerQuorum.InvalidSigner.selector, 0, recovered));
        chain.updateSignerSet(next, sentT, 0, sigs);
    }

    function slice64(bytes memory b, uint256 at) internal pure returns (bytes memory out) {
        out = new bytes(64);
        for (uint256 i; i < 64; ++i) out[i] = b[at + i];
    }

    function test_RevertWhen_SetUpdateInvalidSet() public {
        address[] memory next = makeMembers("next", 3);
        bytes memory sigs = updateSigs(next, 0, 0, 0x3);
        vm.expectRevert(abi.encodeWithSelector(SignerQuorum.ThresholdOutOfRange.selector, 0, 3));
        chain.updateSignerSet(next, 0, 0, sigs);
        address[] memory empty = new address[](0);
        sigs = updateSigs(empty, 1, 0, 0x3);
        vm.expectRevert(abi.encodeWithSelector(SignerQuorum.SignerCountOutOfRange.selector, 0));
        chain.updateSignerSet(empty, 1, 0, sigs);
    }

    function testFuzz_RevertWhen_SetUpdateNotAscending(uint8 n, uint8 at) public {
        n = uint8(bound(n, 2, 32));
        at = uint8(bound(at, 1, n - 1));
        address[] memory next = makeMembers("next", n);
        (next[at], next[at - 1]) = (next[at - 1], next[at]);
        bytes memory sigs = updateSigs(next, 1, 0, 0x3);
        vm.expectRevert(abi.encodeWithSelector(SignerQuorum.SignerSetNotAscending.selector, at));
        chain.updateSignerSet(next, 1, 0, sigs);
    }

    function test_OwnerReplacesSetDuringBootstrap() public {
        address[] memory next = makeMembers("next", 5);
        vm.prank(OWNER);
        chain.setSignerSet(next, 4);
        (address[] memory set, uint8 t, uint256 nonce) = chain.signerSet();
        assertEq(set.length, 5, "n");
        assertEq(t, 4, "t");
        assertEq(nonce, 1, "an owner change uses a nonce too");
        // An update the old set signed for nonce 0 is dead.
        bytes memory sigs = updateSigs(members, 1, 0, 0x3);
        vm.expectRevert(abi.encodeWithSelector(SignerQuorum.WrongNonce.selector, 1, 0));
        chain.updateSignerSet(members, 1, 0, sigs);
    }

    function testFuzz_OwnerReplacesSetDuringBootstrap(uint8 n, uint8 t) public {
        n = uint8(bound(n, 1, 32));
        t = uint8(bound(t, 1, n));
        address[] memory next = makeMembers("next", n);
        vm.prank(OWNER);
        chain.setSignerSet(next, t);
        assertEq(chain.signerSetCommitment(), chain.computeSignerSetCommitment(next, t), "commitment");
    }

    function test_RevertWhen_NotOwnerSetsSignerSet() public {
        vm.prank(members[0]);
        vm.expectRevert(abi.encodeWithSelector(PoLChain.NotOwner.selector, members[0]));
        chain.setSignerSet(members, 1);
    }

    function testFuzz_RevertWhen_NotOwnerSetsSignerSet(address who) public {
        vm.assume(who != OWNER);
        vm.prank(who);
        vm.expectRevert(abi.encodeWithSelector(PoLChain.NotOwner.selector, who));
        chain.setSignerSet(members, 1);
        vm.prank(who);
        vm.expectRevert(abi.encodeWithSelector(PoLChain.NotOwner.selector, who));
        chain.endBootstrap();
    }

    function test_RevertWhen_OwnerSetsSetAfterBootstrap() public {
        vm.startPrank(OWNER);
        vm.expectEmit(false, false, false, true);
        emit SignerQuorum.BootstrapEnded();
        chain.endBootstrap();
        assertTrue(!chain.bootstrapActive(), "ended");
        vm.expectRevert(SignerQuorum.BootstrapOver.selector);
        chain.setSignerSet(members, 1);
        vm.expectRevert(SignerQuorum.BootstrapOver.selector);
        chain.endBootstrap();
        vm.stopPrank();
        // Signed updates still work.
        address[] memory next = makeMembers("next", 2);
        chain.updateSignerSet(next, 2, 0, updateSigs(next, 2, 0, 0x3));
        assertEq(chain.signerSetCommitment(), chain.computeSignerSetCommitment(next, 2), "signed update");
    }

    function testFuzz_RevertWhen_OwnerSetsSetAfterBootstrap(uint8 n, uint8 t) public {
        n = uint8(bound(n, 1, 32));
        t = uint8(bound(t, 1, n));
        vm.prank(OWNER);
        chain.endBootstrap();
        address[] memory next = makeMembers("next", n);
        vm.prank(OWNER);
        vm.expectRevert(SignerQuorum.BootstrapOver.selector);
        chain.setSignerSet(next, t);
    }

    function test_RevertWhen_QuorumCallsInSingleAttesterMode() public {
        PoLChain single = new PoLChain(genesis(), noQuorum());
        assertTrue(!single.QUORUM() && !single.bootstrapActive(), "single mode");
        Sub memory s = nextBlock(0);
        vm.expectRevert(SignerQuorum.SingleAttesterMode.selector);
        single.submitBlockSigned(
            s.height, s.weightsHash, s.newWeightsHash, s.segmentRoot, s.indices, s.correctBefore, s.correctAfter,
            s.redraw, s.miner, hex"0200000003"
        );
        vm.expectRevert(SignerQuorum.SingleAttesterMode.selector);
        single.updateSignerSet(members, 1, 0, hex"");
        vm.startPrank(OWNER);
        vm.expectRevert(SignerQuorum.SingleAttesterMode.selector);
        single.setSignerSet(members, 1);
        vm.expectRevert(SignerQuorum.SingleAttesterMode.selector);
        single.endBootstrap();
        vm.stopPrank();
        PoLChain.Header memory h = headerOf(s);
        vm.expectRevert(SignerQuorum.SingleAttesterMode.selector);
        single.reportEquivocation(h, new bytes(64), h, new bytes(64));
    }

    function testFuzz_RevertWhen_SubmitBlockSignedInSingleAttesterMode(address relayer, bytes calldata sigs) public {
        PoLChain single = new PoLChain(genesis(), noQuorum());
        Sub memory s = nextBlock(0);
        vm.prank(relayer);
        vm.expectRevert(SignerQuorum.SingleAttesterMode.selector);
        single.submitBlockSigned(
            s.height, s.weightsHash, s.newWeightsHash, s.segmentRoot, s.indices, s.correctBefore, s.correctAfter,
            s.redraw, s.miner, sigs
        );
    }
}

/// @dev Equivocation: a member's signatures over two different headers at one height and redraw index.
contract PoLChainQuorumEquivocationTest is QuorumFixture {
    function test_EquivocationRemovesSigner() public {
        PoLChain.Header memory a = headerWith(keccak256("a"), 0);
        PoLChain.Header memory b = headerWith(keccak256("b"), 0);
        address m = members[1];
        address[] memory rest = new address[](2);
        (rest[0], rest[1]) = (members[0], members[2]);
        vm.expectEmit(true, false, false, true);
        emit SignerQuorum.Equivocation(m, 1, 0, keccak256(abi.encode(a)), keccak256(abi.encode(b)), true);
        vm.expectEmit(true, false, false, true);
        emit SignerQuorum.SignerSetChanged(1, 2, rest);
        vm.prank(RELAYER); // anyone may report
        chain.reportEquivocation(a, signHeader(m, a), b, signHeader(m, b));
        assertTrue(!chain.isSigner(m), "removed");
        (address[] memory set, uint8 t,) = chain.signerSet();
        assertEq(set.length, 2, "n");
        assertEq(t, 2, "t kept");
        // The removed member's signature no longer counts; the other two still attest.
        Sub memory s = nextBlock(0);
        bytes memory withRemoved = signedBy(2, members, 0x3, digestOf(s));
        vm.expectRevert(abi.encodeWithSelector(SignerQuorum.InvalidSigner.selector, 1, m));
        relay(s, withRemoved);
        members = rest;
        relay(s, sigsFor(s, 0x3));
        assertEq(chain.tipHeight(), 1, "the rest attest");
    }

    function testFuzz_EquivocationRemovesSigner(uint8 which, bytes32 wa, bytes32 wb, uint32 redraw) public {
        vm.assume(wa != wb);
        which = uint8(bound(which, 0, 2));
        PoLChain.Header memory a = headerWith(wa, redraw);
        PoLChain.Header memory b = headerWith(wb, redraw);
        address m = members[which];
        chain.reportEquivocation(a, signHeader(m, a), b, signHeader(m, b));
        assertTrue(!chain.isSigner(m), "removed");
        (address[] memory set,, uint256 nonce) = chain.signerSet();
        assertEq(set.length, 2, "n");
        assertEq(nonce, 1, "a removal is a set change");
    }

    function test_EquivocationAtThresholdOnlyLogged() public {
        vm.prank(OWNER);
        chain.setSignerSet(members, 3); // 3-of-3: removing anyone would leave the set below t
        PoLChain.Header memory a = headerWith(keccak256("a"), 0);
        PoLChain.Header memory b = headerWith(keccak256("b"), 0);
        vm.expectEmit(true, false, false, true);
        emit SignerQuorum.Equivocation(members[0], 1, 0, keccak256(abi.encode(a)), keccak256(abi.encode(b)), false);
        chain.reportEquivocation(a, signHeader(members[0], a), b, signHeader(members[0], b));
        assertTrue(chain.isSigner(members[0]), "kept");
        (address[] memory set, uint8 t,) = chain.signerSet();
        assertTrue(set.length >= t, "never below t");
    }

    function testFuzz_EquivocationNeverBelowThreshold(uint8 reports, uint256 seed) public {
        reports = uint8(bound(reports, 1, 6));
        for (uint256 i; i < reports; ++i) {
            (address[] memory set, uint8 t,) = chain.signerSet();
            address m = set[uint256(keccak256(abi.encode(seed, i))) % set.length];
            PoLChain.Header memory a = headerWith(keccak256(abi.encode("a", i)), 0);
            PoLChain.Header memory b = headerWith(keccak256(abi.encode("b", i)), 0);
            chain.reportEquivocation(a, signHeader(m, a), b, signHeader(m, b));
            (set, t,) = chain.signerSet();
            assertTrue(set.length >= t && t >= 1, "never below t");
        }
    }

    function test_RevertWhen_NotConflicting() public {
        PoLChain.Header memory a = headerWith(keccak256("a"), 0);
        PoLChain.Header memory b = headerWith(keccak256("b"), 1); // a timed redraw of the same height
        bytes memory sa = signHeader(members[0], a);
        bytes memory sb = signHeader(members[0], b);
        vm.expectRevert(abi.encodeWithSelector(SignerQuorum.NotConflicting.selector, 1, 0, 1, 1));
        chain.reportEquivocation(a, sa, b, sb);
    }

    function testFuzz_RevertWhen_NotConflicting(uint64 height, uint32 redraw) public {
        PoLChain.Header memory a = headerWith(keccak256("a"), 0);
        PoLChain.Header memory b = headerWith(keccak256("b"), redraw);
        b.height = height;
        vm.assume(height != a.height || redraw != 0);
        bytes memory sa = signHeader(members[0], a);
        bytes memory sb = signHeader(members[0], b);
        vm.expectRevert(abi.encodeWithSelector(SignerQuorum.NotConflicting.selector, 1, 0, height, redraw));
        chain.reportEquivocation(a, sa, b, sb);
    }

    function test_RevertWhen_SameHeader() public {
        PoLChain.Header memory a = headerWith(keccak256("a"), 0);
        bytes memory sa = signHeader(members[0], a);
        vm.expectRevert(abi.encodeWithSelector(SignerQuorum.SameHeader.selector, keccak256(abi.encode(a))));
        chain.reportEquivocation(a, sa, a, sa);
    }

    function testFuzz_RevertWhen_SameHeader(bytes32 w, uint8 which) public {
        PoLChain.Header memory a = headerWith(w, 0);
        bytes memory sa = signHeader(members[which % 3], a);
        vm.expectRevert(abi.encodeWithSelector(SignerQuorum.SameHeader.selector, keccak256(abi.encode(a))));
        chain.reportEquivocation(a, sa, a, sa);
    }

    function test_RevertWhen_DifferentSigners() public {
        PoLChain.Header memory a = headerWith(keccak256("a"), 0);
        PoLChain.Header memory b = headerWith(keccak256("b"), 0);
        bytes memory sa = signHeader(members[0], a);
        bytes memory sb = signHeader(members[1], b); // two members disagreeing is no offence
        vm.expectRevert(abi.encodeWithSelector(SignerQuorum.DifferentSigners.selector, members[0], members[1]));
        chain.reportEquivocation(a, sa, b, sb);
    }

    function testFuzz_RevertWhen_DifferentSigners(uint8 i, uint8 j, bytes32 w) public {
        i = uint8(bound(i, 0, 2));
        j = uint8(bound(j, 0, 2));
        vm.assume(i != j);
        PoLChain.Header memory a = headerWith(w, 0);
        PoLChain.Header memory b = headerWith(keccak256(abi.encode(w)), 0);
        bytes memory sa = signHeader(members[i], a);
        bytes memory sb = signHeader(members[j], b);
        vm.expectRevert(abi.encodeWithSelector(SignerQuorum.DifferentSigners.selector, members[i], members[j]));
        chain.reportEquivocation(a, sa, b, sb);
    }

    function test_RevertWhen_EquivocatorNotInSet() public {
        address outsider = makeKey("outsider", 0);
        PoLChain.Header memory a = headerWith(keccak256("a"), 0);
        PoLChain.Header memory b = headerWith(keccak256("b"), 0);
        bytes memory sa = signHeader(outsider, a);
        bytes memory sb = signHeader(outsider, b);
        vm.expectRevert(abi.encodeWithSelector(SignerQuorum.InvalidSigner.selector, 0, outsider));
        chain.reportEquivocation(a, sa, b, sb);
        // Evidence against a removed member does not remove anyone else.
        sa = signHeader(members[2], a);
        sb = signHeader(members[2], b);
        chain.reportEquivocation(a, sa, b, sb);
        vm.expectRevert(abi.encodeWithSelector(SignerQuorum.InvalidSigner.selector, 0, members[2]));
        chain.reportEquivocation(a, sa, b, sb);
    }

    function testFuzz_RevertWhen_EquivocationFromAnotherDomain(uint256 chainId) public {
        vm.assume(chainId != block.chainid);
        PoLChain.Header memory a = headerWith(keccak256("a"), 0);
        PoLChain.Header memory b = headerWith(keccak256("b"), 0);
        bytes32 sep = domainSeparator(chainId, address(chain));
        // Signed for another chain: here they recover to two unrelated accounts.
        bytes memory sa = compact(keyOf[members[0]], blockDigest(sep, keccak256(abi.encode(a))));
        bytes memory sb = compact(keyOf[members[0]], blockDigest(sep, keccak256(abi.encode(b))));
        address ra = recoverCompact(chain.blockDigest(keccak256(abi.encode(a))), sa);
        address rb = recoverCompact(chain.blockDigest(keccak256(abi.encode(b))), sb);
        vm.expectRevert(abi.encodeWithSelector(SignerQuorum.DifferentSigners.selector, ra, rb));
        chain.reportEquivocation(a, sa, b, sb);
        assertTrue(chain.isSigner(members[0]), "kept");
    }

    function test_RevertWhen_EquivocationSignatureMalleableOrShort() public {
        PoLChain.Header memory a = headerWith(keccak256("a"), 0);
        PoLChain.Header memory b = headerWith(keccak256("b"), 0);
        bytes memory sa = signHeader(members[0], a);
        bytes memory sb = signHeader(members[0], b);
        vm.expectRevert(abi.encodeWithSelector(SignerQuorum.MalleableSignature.selector, 1));
        chain.reportEquivocation(a, sa, b, withS(sb, HALF_ORDER + 1));
        vm.expectRevert(abi.encodeWithSelector(SignerQuorum.MalformedSignatures.selector, 65));
        chain.reportEquivocation(a, bytes.concat(sa, hex"1b"), b, sb);
    }

    function testFuzz_RevertWhen_EquivocationSignatureMalformed(uint8 length) public {
        vm.assume(length != 64);
        PoLChain.Header memory a = headerWith(keccak256("a"), 0);
        PoLChain.Header memory b = headerWith(keccak256("b"), 0);
        bytes memory sb = signHeader(members[0], b);
        vm.expectRevert(abi.encodeWithSelector(SignerQuorum.MalformedSignatures.selector, length));
        chain.reportEquivocation(a, new bytes(length), b, sb);
    }
}

/// @dev Whole-transaction gas (forge snapshot --isolate) of the worst quorum block: chain-bound, a redraw,
/// a non-zero miner, the first t members signing.
abstract contract QuorumGasTest is QuorumFixture {
    function test_GasSubmitBlockSigned() public {
        (uint256 n, uint8 t) = size();
        string memory label = string.concat(vm.toString(t), "-of-", vm.toString(n));
        extendSigned(3);
        Sub memory s = nextBlock(100);
        s.miner = address(bytes20(keccak256("nonzero miner")));
        bytes memory sigs = sigsFor(s, (1 << t) - 1);
        relay(s, sigs);
        vm.snapshotGasLastCall(string.concat("submitBlockSigned ", label));
        vm.warp(block.timestamp + REDRAW_AFTER);
        s = nextBlock(101);
        s.miner = address(bytes20(keccak256("nonzero miner")));
        s.redraw = 1;
        sigs = sigsFor(s, (1 << t) - 1);
        relay(s, sigs);
        vm.snapshotGasLastCall(string.concat("submitBlockSigned ", label, " with a redraw"));
    }
}

contract PoLChainQuorum2of3GasTest is QuorumGasTest {}

contract PoLChainQuorum3of5GasTest is QuorumGasTest {
    function size() internal pure override returns (uint256, uint8) {
        return (5, 3);
    }
}

contract PoLChainQuorum5of7GasTest is QuorumGasTest {
    function size() internal pure override returns (uint256, uint8) {
        return (7, 5);
    }
}

/// @dev tests/vectors/quorum.json, which pytest checks against pol_core.attestation.
contract PoLChainQuorumVectorsTest is QuorumFixture {
    function json() internal view returns (string memory) {
        return vm.readFile(string.concat(vm.projectRoot(), "/tests/vectors/quorum.json"));
    }

    function at(string memory section, uint256 i, string memory field) internal pure returns (string memory) {
        return string.concat(".", section, "[", vm.toString(i), "].", field);
    }

    function test_GoldenKeysAndDomains() public view {
        string memory j = json();
        address[] memory addrs = vm.parseJsonAddressArray(j, ".addresses");
        for (uint256 i; i < addrs.length; ++i) {
            uint256 key = uint256(vm.parseJsonBytes32(j, string.concat(".keys[", vm.toString(i), "]")));
            assertEq(vm.addr(key), addrs[i], "address of key");
        }
        uint256 n = vm.parseJsonUint(j, ".domainCount");
        assertTrue(n > 0, "vectors present");
        for (uint256 i; i < n; ++i) {
            bytes32 want = vm.parseJsonBytes32(j, at("domains", i, "separator"));
            uint256 chainId = vm.parseJsonUint(j, at("domains", i, "chainId"));
            address c = vm.parseJsonAddress(j, at("domains", i, "verifyingContract"));
            assertEq(chain.computeDomainSeparator(chainId, c), want, "contract's domain separator");
            assertEq(domainSeparator(chainId, c), want, "test's domain separator");
        }
    }

    function test_GoldenBlockDigestsAndSignatures() public view {
        string memory j = json();
        address[] memory addrs = vm.parseJsonAddressArray(j, ".addresses");
        uint256 n = vm.parseJsonUint(j, ".blockCount");
        assertTrue(n > 0, "vectors present");
        for (uint256 i; i < n; ++i) {
            uint256 d = vm.parseJsonUint(j, at("blocks", i, "domain"));
            bytes32 sep = vm.parseJsonBytes32(j, at("domains", d, "separator"));
            bytes32 h = vm.parseJsonBytes32(j, at("blocks", i, "blockHash"));
            bytes32 digest = vm.parseJsonBytes32(j, at("blocks", i, "digest"));
            assertEq(chain.computeBlockDigest(sep, h), digest, "block digest");
            bytes[] memory sigs = vm.parseJsonBytesArray(j, at("blocks", i, "signatures"));
            for (uint256 k; k < sigs.length; ++k) {
                uint256 key = uint256(vm.parseJsonBytes32(j, string.concat(".keys[", vm.toString(k), "]")));
                assertEq(compact(key, digest), sigs[k], "RFC 6979 signature, compact");
                assertEq(recoverCompact(digest, sigs[k]), addrs[k], "recovers the key's address");
            }
        }
    }

    function test_GoldenSetUpdatesAndCommitments() public view {
        string memory j = json();
        address[] memory addrs = vm.parseJsonAddressArray(j, ".addresses");
        uint256 n = vm.parseJsonUint(j, ".updateCount");
        assertTrue(n > 0, "vectors present");
        for (uint256 i; i < n; ++i) {
            bytes32 sep = vm.parseJsonBytes32(j, at("domains", vm.parseJsonUint(j, at("updates", i, "domain")), "separator"));
            address[] memory signers = vm.parseJsonAddressArray(j, at("updates", i, "signers"));
            uint8 t = uint8(vm.parseJsonUint(j, at("updates", i, "threshold")));
            uint256 nonce = vm.parseJsonUint(j, at("updates", i, "nonce"));
            bytes32 digest = vm.parseJsonBytes32(j, at("updates", i, "digest"));
            assertEq(chain.computeSignerSetUpdateDigest(sep, signers, t, nonce), digest, "update digest");
            bytes[] memory sigs = vm.parseJsonBytesArray(j, at("updates", i, "signatures"));
            for (uint256 k; k < sigs.length; ++k) assertEq(recoverCompact(digest, sigs[k]), addrs[k], "signer");
        }
        n = vm.parseJsonUint(j, ".commitmentCount");
        for (uint256 i; i < n; ++i) {
            address[] memory signers = vm.parseJsonAddressArray(j, at("commitments", i, "signers"));
            uint256 t = vm.parseJsonUint(j, at("commitments", i, "threshold"));
            bytes memory want = vm.parseJsonBytes(j, at("commitments", i, "commitment"));
            assertEq(abi.encodePacked(chain.computeSignerSetCommitment(signers, t)), want, "commitment");
        }
    }

    function test_GoldenPackedSignatures() public view {
        string memory j = json();
        bytes32 digest = vm.parseJsonBytes32(j, at("blocks", 0, "digest"));
        address[] memory addrs = vm.parseJsonAddressArray(j, ".addresses");
        uint256 n = vm.parseJsonUint(j, ".packedCount");
        assertTrue(n > 0, "vectors present");
        for (uint256 i; i < n; ++i) {
            address[] memory signers = vm.parseJsonAddressArray(j, at("packed", i, "signers"));
            uint256[] memory by = vm.parseJsonUintArray(j, at("packed", i, "signedBy"));
            uint256 mask;
            for (uint256 k; k < by.length; ++k) mask |= 1 << by[k];
            bytes[] memory sigs = new bytes[](signers.length);
            for (uint256 k; k < signers.length; ++k) {
                if ((mask >> k) & 1 == 0) continue;
                for (uint256 a; a < addrs.length; ++a) {
                    if (addrs[a] != signers[k]) continue;
                    uint256 key = uint256(vm.parseJsonBytes32(j, string.concat(".keys[", vm.toString(a), "]")));
                    sigs[k] = compact(key, digest);
                }
            }
            uint8 t = uint8(vm.parseJsonUint(j, at("packed", i, "threshold")));
            assertEq(pack(t, signers, mask, sigs), vm.parseJsonBytes(j, at("packed", i, "packed")), "packing");
        }
    }
}
